// One persistent thread pool for every kernel call.
#pragma once

#include <cstdint>

namespace pysparse {

// Physical cores this process may run on (SMT siblings counted once).
int default_num_threads();

// Threads used by kernel calls, the caller included (>= 1). The first call to
// run() with more than one thread starts the workers; set_num_threads() resizes.
int get_num_threads();
// Throws std::invalid_argument if n < 1 or n > kMaxThreads.
void set_num_threads(int n);
inline constexpr int kMaxThreads = 256;

using TaskFn = void (*)(void* ctx, int task);

// Runs fn(ctx, t) for t in [0, n) and returns when all are done, on at most
// min(threads, get_num_threads()) threads, the caller being one of them. Tasks
// are claimed one at a time from a shared counter, so a thread that starts late
// (a worker woken from sleep, a core the hypervisor lent to someone else) just
// runs fewer of them: callers split work into a few tasks per thread. If
// another thread is already using the pool, the tasks run one after another on
// the calling thread instead of waiting: correct, never a deadlock, and Python
// threads calling at once each make progress.
void parallel_run(int n, int threads, TaskFn fn, void* ctx);

template <class F>
void parallel_for(int n, int threads, F&& f) {
  parallel_run(n, threads, [](void* ctx, int t) { (*static_cast<F*>(ctx))(t); }, &f);
}

}  // namespace pysparse
