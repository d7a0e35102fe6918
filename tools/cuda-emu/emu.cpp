#include <barrier>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <cuda_runtime.h>

// Dynamic shared memory of the kernels (extern __shared__ arrays).
alignas(16) float emu_dyn_smem[1 << 16];

namespace emu {
thread_local dim3 tIdx, bIdx;
dim3 bDim, gDim;
namespace {
std::optional<std::barrier<>> g_block;
std::vector<std::unique_ptr<std::optional<std::barrier<>>>> g_warps;
alignas(16) unsigned char g_xbuf[64][32][16];
thread_local bool t_dropped = false;
}  // namespace

void syncthreads() { g_block->arrive_and_wait(); }
void syncwarp() { (*g_warps[tIdx.x / 32])->arrive_and_wait(); }
void exchange(const void* v, void* out, int src, size_t bytes) {
  const unsigned w = tIdx.x / 32, lane = tIdx.x % 32;
  std::memcpy(g_xbuf[w][lane], v, bytes);
  syncwarp();
  std::memcpy(out, g_xbuf[w][src], bytes);
  syncwarp();
}

void launch(dim3 grid, dim3 block, const std::function<void()>& body) {
  const unsigned n = block.x * block.y * block.z;
  if (block.y != 1 || block.z != 1 || n > 1024) std::abort();
  bDim = block;
  gDim = grid;
  const unsigned nw = (n + 31) / 32;
  auto reset = [n, nw]() noexcept {
    g_block.emplace(n);
    g_warps.resize(nw);
    for (unsigned w = 0; w < nw; ++w) {
      if (!g_warps[w]) g_warps[w] = std::make_unique<std::optional<std::barrier<>>>();
      g_warps[w]->emplace(std::min(32u, n - 32 * w));
    }
  };
  reset();
  std::barrier<decltype(reset)> end(n, reset);
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < n; ++t)
    ts.emplace_back([&, t] {
      tIdx = dim3(t, 0, 0);
      for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
          for (unsigned x = 0; x < grid.x; ++x) {
            bIdx = dim3(x, y, z);
            body();
            g_block->arrive_and_drop();
            (*g_warps[t / 32])->arrive_and_drop();
            end.arrive_and_wait();
          }
    });
  for (auto& th : ts) th.join();
}
}  // namespace emu
