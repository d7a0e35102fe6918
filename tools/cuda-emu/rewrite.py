import re, sys, os
src, dst = sys.argv[1], sys.argv[2]
s = open(src).read()
s = re.sub(r'extern __shared__ float (\w+)\[\];', r'float* \1 = ::emu_dyn_smem;', s)
out = []
i = 0
while True:
    k = s.find('<<<', i)
    if k < 0:
        out.append(s[i:]); break
    # kernel expression: scan back over identifier chars, ::, and balanced <...>
    j = k
    depth = 0
    while j > 0:
        c = s[j-1]
        if c == '>':
            depth += 1; j -= 1; continue
        if c == '<' and depth > 0:
            depth -= 1; j -= 1; continue
        if depth > 0 or c.isalnum() or c in '_:':
            j -= 1; continue
        if c in ', ' and depth > 0:
            j -= 1; continue
        break
    name = s[j:k]
    e = s.find('>>>', k)
    cfg = s[k+3:e]
    # split cfg on top-level commas
    parts, d, cur = [], 0, ''
    for c in cfg:
        if c in '([{': d += 1
        if c in ')]}': d -= 1
        if c == ',' and d == 0:
            parts.append(cur); cur = ''
        else:
            cur += c
    parts.append(cur)
    p = e + 3
    if s[p] != '(':
        out.append(s[i:p]); i = p; continue
    d = 0; q = p
    while True:
        if s[q] == '(': d += 1
        elif s[q] == ')':
            d -= 1
            if d == 0: break
        q += 1
    args = s[p+1:q]
    out.append(s[i:j])
    out.append('::emu::launch(dim3(%s), dim3(%s), [&] { %s(%s); })' % (parts[0].strip(), parts[1].strip(), name, args))
    i = q + 1
open(dst, 'w').write('#include <cuda_runtime.h>\n' + ''.join(out))
