#!/usr/bin/env python3
"""bench/lib/sync_phases.py — the phases of ringmaild's spool syncs, from `perf script` text.

Reads the events bench/sync_trace.sh records (io_uring, block and sched tracepoints, all
CPUs) and follows each spool batch of ONE event loop from its hand-off to the io-wq worker
to its completion on the loop:

  hand-off        io_uring queues the WRITEV to io-wq → the worker runs
  page cache      the worker copies the records and submits writeback → the write is issued
  device write    the write request issued → its completion wakes the worker
  worker wakes    that wake-up → the worker runs again (it slept on the writeback)
  flush submit    the worker runs → the cache flush request is issued
  device flush    the flush issued → its completion wakes the worker
  back to loop    the flush completed → the CQE is posted on the loop (worker wake-up,
                  then the loop's, with DEFER_TASKRUN the CQE is made in the loop's thread)

and prints each phase's median and mean, the device's share (write + flush) and the rest.
A batch whose events cannot all be matched (a split write, an error, the trace's edges) is
skipped and counted. Only for one loop: the block events carry no ring, so two loops'
batches would interleave. Usage: sync_phases.py PERF_SCRIPT_TEXT
"""
import re
import statistics
import sys

LINE = re.compile(r'\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)')
PHASES = [('hand-off', 'queued', 'worker_ran'),
          ('page cache', 'worker_ran', 'write_issued'),
          ('device write', 'write_issued', 'write_done'),
          ('worker wakes', 'write_done', 'worker_back'),
          ('flush submit', 'worker_back', 'flush_issued'),
          ('device flush', 'flush_issued', 'flush_done'),
          ('back to loop', 'flush_done', 'completed')]


def events(path):
    out = []
    with open(path, errors='replace') as f:
        for line in f:
            m = LINE.match(line)
            if m:
                comm, _tid, _cpu, t, name, rest = m.groups()
                out.append((float(t) * 1e6, comm, name, rest))
    out.sort(key=lambda e: e[0])
    return out


def step(batch, t, comm, name, rest):
    """Advances one batch by one event; True when the batch is complete.

    The device's completions are taken from the worker's wake-ups, not from
    block_rq_complete: on this VM most of those are missing from the trace (136 of 8,566
    requests in one run, session 9), but the wake-up each completion causes is there. A
    write split into several requests wakes the worker more than once: the last wake-up
    before the flush counts."""
    if name == 'sched:sched_wakeup' and 'comm=iou-wrk' in rest:
        if 'write_issued' in batch and 'flush_issued' not in batch:
            batch['write_done'] = t
        elif 'flush_issued' in batch and 'flush_done' not in batch:
            batch['flush_done'] = t
    elif name == 'sched:sched_switch' and 'next_comm=iou-wrk' in rest:
        if 'worker_ran' not in batch:
            batch['worker_ran'] = t
        elif 'write_done' in batch and 'flush_issued' not in batch:
            batch['worker_back'] = t
    elif name == 'block:block_rq_issue':
        fields = rest.split()
        kind = fields[1] if len(fields) > 1 else ''
        if kind == 'FF':
            if 'worker_back' in batch and 'flush_issued' not in batch:
                batch['flush_issued'] = t
        elif 'W' in kind and comm.startswith('iou-wrk'):
            batch.setdefault('write_issued', t)
    elif name == 'io_uring:io_uring_complete' and batch['user_data'] in rest:
        batch['completed'] = t
        return True
    return False


def main():
    if len(sys.argv) != 2:
        sys.exit('usage: sync_phases.py PERF_SCRIPT_TEXT')
    samples = {p[0]: [] for p in PHASES}
    totals = []
    batch = None
    skipped = 0
    for t, comm, name, rest in events(sys.argv[1]):
        if name == 'io_uring:io_uring_queue_async_work' and 'opcode WRITEV' in rest:
            if batch is not None:
                skipped += 1  # never completed in the trace: a new batch began
            m = re.search(r'user_data (\S+),', rest)
            batch = {'queued': t, 'user_data': m.group(1) if m else '?'}
            continue
        if batch is None or not step(batch, t, comm, name, rest):
            continue
        if all(p[1] in batch and p[2] in batch for p in PHASES) and \
                all(batch[p[2]] >= batch[p[1]] for p in PHASES):
            for phase, a, b in PHASES:
                samples[phase].append(batch[b] - batch[a])
            totals.append(batch['completed'] - batch['queued'])
        else:
            skipped += 1
        batch = None
    if not totals:
        sys.exit('no spool batch could be followed through the trace')
    print(f'{len(totals)} batches followed, {skipped} skipped')
    print(f'{"phase":14s} {"median µs":>10s} {"mean µs":>9s}')
    for phase, _, _ in PHASES:
        v = samples[phase]
        print(f'{phase:14s} {statistics.median(v):10.1f} {statistics.mean(v):9.1f}')
    device = [w + f for w, f in zip(samples['device write'], samples['device flush'])]
    rest = [t - d for t, d in zip(totals, device)]
    print(f'{"whole sync":14s} {statistics.median(totals):10.1f} {statistics.mean(totals):9.1f}')
    print(f'{"  device":14s} {statistics.median(device):10.1f} {statistics.mean(device):9.1f}')
    print(f'{"  the rest":14s} {statistics.median(rest):10.1f} {statistics.mean(rest):9.1f}')


if __name__ == '__main__':
    main()
