import { RecaError } from '../lib/errors';
import { Progress, formatDuration } from '../lib/progress';

/** A stream that records each write; `isTTY`/`columns` as a terminal would report them. */
function fakeStream(isTTY = false, columns?: number) {
  const writes: string[] = [];
  return { writes, isTTY, columns, write: (s: string) => writes.push(s) };
}

/** A clock the test moves by hand. */
function fakeClock(start = 0) {
  const clock = { t: start, now: () => clock.t };
  return clock;
}

describe('formatDuration', () => {
  test.each([
    [0, '0:00'],
    [7, '0:07'],
    [59.4, '0:59'],
    [59.6, '1:00'],
    [65, '1:05'],
    [600, '10:00'],
    [3600, '1:00:00'],
    [3723, '1:02:03'],
    [90061, '25:01:01'],
    [-3, '0:00'],
    [NaN, '?'],
    [Infinity, '?'],
  ])('%p seconds -> %p', (seconds, text) => {
    expect(formatDuration(seconds)).toBe(text);
  });
});

describe('Progress, plain lines', () => {
  test('steady 4 step/s: first tick, then a line every intervalMs, then the final line', () => {
    const stream = fakeStream();
    const clock = fakeClock(1000);
    const p = new Progress({ total: 500, label: 'train', unit: 'step', stream, intervalMs: 5000, now: clock.now });
    // One step every 250 ms for 10.25 s: 41 steps.
    for (let step = 1; step <= 41; step++) {
      clock.t = 1000 + step * 250;
      p.tick(1, step === 1 ? { loss: '0.5000' } : undefined);
    }
    p.done({ loss: '0.2500' });
    // Lines at t = 250 ms (first), 5250 ms and 10250 ms after the start (5 s apart), then done().
    // ETA = remaining / 4: 499/4 = 124.75 s -> 2:05; 479/4 = 119.75 -> 2:00; 459/4 = 114.75 -> 1:55.
    expect(stream.writes).toEqual([
      'train 1/500 (0%) 4.0 step/s ETA 2:05 loss 0.5000\n',
      'train 21/500 (4%) 4.0 step/s ETA 2:00 loss 0.5000\n',
      'train 41/500 (8%) 4.0 step/s ETA 1:55 loss 0.5000\n',
      // 41 steps in 10.25 s: mean 4.0 step/s.
      'train 41/500 (8%) 4.0 step/s in 0:10 loss 0.2500\n',
    ]);
  });

  test('a tick just under intervalMs after the last line prints nothing', () => {
    const stream = fakeStream();
    const clock = fakeClock();
    const p = new Progress({ total: 10, stream, intervalMs: 1000, now: clock.now });
    clock.t = 100;
    p.tick();
    clock.t = 1099;
    p.tick();
    expect(stream.writes).toHaveLength(1);
    clock.t = 1100;
    p.tick();
    expect(stream.writes).toHaveLength(2);
    // No label: the line starts at the count. 3 ticks in 1.1 s, weighted by age -> 2.706 it/s, ETA 7/2.706 = 2.59 s.
    expect(stream.writes[1]).toBe('3/10 (30%) 2.7 it/s ETA 0:03\n');
  });

  test('rate is the exponentially weighted sum(w*dn)/sum(w*dt) with a 30 s time constant', () => {
    const stream = fakeStream();
    const clock = fakeClock();
    const p = new Progress({ total: 10, unit: 'step', stream, intervalMs: 0, now: clock.now });
    const ticks = [
      { t: 1000, n: 1 },
      { t: 2000, n: 1 },
      { t: 32000, n: 2 },
    ];
    let previous = 0;
    const samples: { t: number; n: number; dt: number }[] = [];
    for (const { t, n } of ticks) {
      clock.t = t;
      p.tick(n);
      samples.push({ t, n, dt: t - previous });
      previous = t;
    }
    // Brute-force oracle from the definition, each sample weighted by its age at the last tick.
    const now = ticks[ticks.length - 1].t;
    const weight = (t: number) => Math.exp(-(now - t) / 30000);
    const perSecond =
      (samples.reduce((s, x) => s + weight(x.t) * x.n, 0) / samples.reduce((s, x) => s + weight(x.t) * x.dt, 0)) * 1000;
    // By hand, ages 31 s, 30 s, 0 s: (e^(-31/30) + e^-1 + 2) / (e^(-31/30) + e^-1 + 30) per second
    // = 2.72371 / 30.72371 = 0.088652 -> 11.28 s/step (a plain mean would say 4/32 -> 8 s/step).
    expect(perSecond).toBeCloseTo((Math.exp(-31 / 30) + Math.exp(-1) + 2) / (Math.exp(-31 / 30) + Math.exp(-1) + 30), 12);
    expect(perSecond).toBeCloseTo(0.088652, 5);
    const secondsEach = 1 / perSecond;
    const eta = formatDuration((10 - 4) / perSecond);
    expect(eta).toBe('1:08'); // 6 * 11.280 = 67.7 s
    expect(stream.writes[2]).toBe(`4/10 (40%) ${secondsEach.toFixed(1)} s/step ETA ${eta}\n`);
    expect(stream.writes[2]).toBe('4/10 (40%) 11.3 s/step ETA 1:08\n');
    // The first two ticks: one step per second.
    expect(stream.writes[0]).toBe('1/10 (10%) 1.0 step/s ETA 0:09\n');
    expect(stream.writes[1]).toBe('2/10 (20%) 1.0 step/s ETA 0:08\n');
  });

  test('rates of 100/s and more print without decimals; number fields with 4 significant digits', () => {
    const stream = fakeStream();
    const clock = fakeClock();
    const p = new Progress({ total: 1000, label: 'load', unit: 'img', stream, now: clock.now });
    clock.t = 2000;
    p.tick(250, { lr: 0.00012346, epoch: 3 });
    expect(stream.writes).toEqual(['load 250/1000 (25%) 125 img/s ETA 0:06 lr 0.0001235 epoch 3\n']);
  });

  test('done() always prints once; ticks after it are ignored; a tick at the start time shows no rate', () => {
    const stream = fakeStream();
    const clock = fakeClock(50);
    const p = new Progress({ total: 3, label: 'x', stream, now: clock.now });
    p.tick();
    expect(stream.writes).toEqual(['x 1/3 (33%)\n']);
    clock.t = 3050;
    p.done();
    p.done();
    p.tick();
    expect(stream.writes).toEqual(['x 1/3 (33%)\n', 'x 1/3 (33%) 3.0 s/it in 0:03\n']);
  });

  test('update(done, total) sets the absolute position and may change the total', () => {
    const stream = fakeStream();
    const clock = fakeClock();
    const p = new Progress({ total: 1, label: 'load', unit: 'img', stream, intervalMs: 0, now: clock.now });
    clock.t = 1000;
    p.update(10, 40);
    // 10 images in 1 s -> 10.0 img/s; 30 left -> ETA 0:03.
    clock.t = 2000;
    p.update(30, 50);
    // Another 20 in the next second: weights e^(-1/30) and 1 -> (10 e^(-1/30) + 20) / (e^(-1/30) + 1) = 29.672 / 1.9672 = 15.08 img/s;
    // 20 left -> 1.33 s -> 0:01.
    expect(stream.writes).toEqual(['load 10/40 (25%) 10.0 img/s ETA 0:03\n', 'load 30/50 (60%) 15.1 img/s ETA 0:01\n']);
  });

  test('resumeFrom(done): a resumed loop continues its position; the earlier steps count toward neither rate nor ETA', () => {
    const stream = fakeStream();
    const clock = fakeClock();
    const p = new Progress({ total: 1500, label: 'pretrain', unit: 'step', stream, intervalMs: 0, now: clock.now });
    p.resumeFrom(750);
    clock.t = 2000;
    p.tick();
    // 1 step in 2 s -> 2.0 s/step (not 751 steps in 2 s); 749 left -> 1498 s -> 24:58.
    clock.t = 4000;
    p.tick();
    // 2 steps in 4 s, steady -> 2.0 s/step; 748 left -> 24:56.
    p.done();
    // The mean rate is this process's: 2 steps in 4 s.
    expect(stream.writes).toEqual([
      'pretrain 751/1500 (50%) 2.0 s/step ETA 24:58\n',
      'pretrain 752/1500 (50%) 2.0 s/step ETA 24:56\n',
      'pretrain 752/1500 (50%) 2.0 s/step in 0:04\n',
    ]);
    expect(() => new Progress({ total: 3, stream: fakeStream() }).resumeFrom(-1)).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
  });

  test('invalid totals and counts are RecaError E_INVALID_ARGUMENT', () => {
    for (const total of [-1, 1.5, NaN]) {
      expect(() => new Progress({ total, stream: fakeStream() })).toThrow(RecaError);
    }
    const p = new Progress({ total: 3, stream: fakeStream() });
    expect(() => p.tick(-1)).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
  });
});

describe('Progress, terminal', () => {
  test('one line redrawn with \\r, the bar sized to the columns, at most every 100 ms', () => {
    const stream = fakeStream(true, 50);
    const clock = fakeClock();
    const p = new Progress({ total: 10, label: 'gen', unit: 'img', stream, now: clock.now });
    clock.t = 500;
    p.tick();
    // Without the bar: 'gen [] 1/10 2.0 img/s ETA 0:05' is 30 chars; 49 usable -> a 19-wide bar,
    // 1/10 of it filled -> 1 '#'. ETA 9 / 2.0 = 4.5 s -> 0:05 (rounded half up).
    const first = `\rgen [#${'.'.repeat(18)}] 1/10 2.0 img/s ETA 0:05\x1b[K`;
    expect(stream.writes).toEqual([first]);
    expect(first.length - '\r\x1b[K'.length).toBe(49);
    clock.t = 550;
    p.tick();
    clock.t = 599;
    p.tick();
    expect(stream.writes).toHaveLength(1);
    clock.t = 1000;
    p.tick(1, { loss: '0.1234' });
    expect(stream.writes).toHaveLength(2);
    // 4 ticks in 1 s (steady enough: weights within 1 s of age are ~1) -> 4.0 img/s, ETA 6/4 -> 0:02.
    // Without the bar 42 chars -> 7-wide bar, 4/10 filled -> 2 '#'.
    expect(stream.writes[1]).toBe('\rgen [##.....] 4/10 4.0 img/s ETA 0:02 loss 0.1234\x1b[K');
    clock.t = 2500;
    p.done();
    // 4 ticks in 2.5 s -> mean 1.6 img/s; 41 chars without the bar -> 8 wide, 3 '#'; a newline ends it.
    expect(stream.writes[2]).toBe('\rgen [###.....] 4/10 1.6 img/s in 0:03 loss 0.1234\x1b[K\n');
  });

  test('too narrow for a bar: the bar is dropped and the line clipped to columns - 1', () => {
    const stream = fakeStream(true, 20);
    const clock = fakeClock();
    const p = new Progress({ total: 10, label: 'gen', unit: 'img', stream, now: clock.now });
    clock.t = 500;
    p.tick();
    expect(stream.writes).toEqual(['\rgen 1/10 2.0 img/s \x1b[K']);
  });
});
