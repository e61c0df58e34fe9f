// The thread pool.
//
// Batch-1 layers take tens of microseconds, so waking a sleeping thread
// (several microseconds through the kernel) would eat the gain of a second
// core. Workers therefore spin for a short while after each job (kSpinNs) and
// only then sleep on a condition variable; layer after layer of one forward pass
// finds them awake, an idle process sleeps after a fraction of a millisecond and
// leaves the cores to torch or anyone else.
//
// Never more threads run than asked: a job wakes at most get_num_threads() - 1
// workers, each through its own slot, and the caller works too. Tasks are
// claimed from one atomic counter rather than dealt out in advance: on a shared
// VM a worker's wake-up or a stolen core would otherwise leave the caller
// waiting with nothing to do. set_num_threads() is
// cheap both ways (benchmarks alternate 1 and 2 threads call by call): growing
// starts workers on the next job, shrinking leaves the surplus asleep. Workers
// are never joined; they live as long as the process. One job at a time: a
// caller that finds the pool busy (another Python thread is in a kernel, the
// GIL being released) runs its tasks itself. After fork() the child has no
// workers; the pool forgets them and starts new ones on first use.
//
// The caller waits only for the workers that joined the job, never for one
// that was posted but has not got a core yet: when the caller has claimed the
// last task it closes the job (one bit of `state_`), and a worker arriving
// after that finds it closed and goes back to waiting. Before, the caller spun
// until every posted worker had woken, found nothing left and signed off; on a
// busy VM (load 8 on 2 cores: other processes holding the second core for a
// time slice) that made a 2-thread forward of MiniLM 10x slower than one
// thread, every small job waiting a scheduler slice for a worker that then did
// nothing. A worker that joined and is preempted mid-task is still waited for
// (its task's results are needed); tasks are small, a few per thread.
#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define PYSPARSE_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define PYSPARSE_PAUSE() __asm__ __volatile__("yield")
#else
#define PYSPARSE_PAUSE() ((void)0)
#endif

namespace pysparse {

namespace {

constexpr int64_t kSpinNs = 200 * 1000;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class Pool {
 public:
  Pool() : requested_(default_num_threads()) {}

  int requested() const { return requested_.load(); }

  // Cheap in both directions: growing starts workers lazily on the next job,
  // shrinking just stops handing jobs to the surplus ones, which go to sleep.
  void resize(int n) { requested_.store(n); }

  void run(int n, int threads, TaskFn fn, void* ctx) {
    if (n <= 0) return;
    const int T = std::min({n, threads, requested_.load()});
    if (T <= 1) {
      for (int t = 0; t < n; ++t) fn(ctx, t);
      return;
    }
    std::unique_lock<std::mutex> run_lock(run_mutex_, std::try_to_lock);
    if (!run_lock.owns_lock()) {
      for (int t = 0; t < n; ++t) fn(ctx, t);
      return;
    }
    while (static_cast<int>(workers_.size()) < T - 1) start_worker();
    job_fn_ = fn;
    job_ctx_ = ctx;
    job_n_ = n;
    job_workers_ = T - 1;
    next_task_.store(0, std::memory_order_relaxed);
    // Open the job (a new generation, nobody joined): the release publishes
    // the fields above to every worker whose join (an acquire CAS) succeeds.
    generation_ += 1;
    state_.store(generation_ << kGenShift, std::memory_order_release);
    for (int w = 1; w < T; ++w) workers_[w - 1]->post();
    drain();
    // Close it: no worker joins from now on; wait for those that did. They
    // are running (or preempted in) a task, so this is short; after a while
    // of spinning, yield, so that a preempted worker sharing our core runs.
    uint64_t s = state_.fetch_or(kClosed, std::memory_order_acq_rel) | kClosed;
    for (int i = 0; (s & kJoinedMask) != 0; ++i) {
      if (i < 4096) {
        PYSPARSE_PAUSE();
      } else {
        std::this_thread::yield();
      }
      s = state_.load(std::memory_order_acquire);
    }
  }

  // Claims and runs tasks of the posted job until none is left.
  void drain() {
    for (int t; (t = next_task_.fetch_add(1, std::memory_order_relaxed)) < job_n_;) job_fn_(job_ctx_, t);
  }

  // A woken worker (index w) joins the open job, if there is one and it is
  // among the job's workers, runs tasks, and signs off.
  void work(int w) {
    uint64_t s = state_.load(std::memory_order_acquire);
    for (;;) {
      if ((s & kClosed) != 0) return;  // the caller already finished it (or no job yet)
      if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire)) break;
    }
    // Joined: the job's fields stay as they are until we sign off.
    if (w < job_workers_) drain();
    state_.fetch_sub(1, std::memory_order_release);
  }

  // In a forked child the workers do not exist: forget them (never join or
  // destroy them) and reset the synchronisation state.
  void after_fork_child() {
    for (Worker*& w : workers_) w = nullptr;  // leaked on purpose
    workers_.clear();
    new (&run_mutex_) std::mutex();
    state_.store(kClosed, std::memory_order_relaxed);
  }

 private:
  // One worker: a thread and its own wake-up slot. post() bumps `go`; the thread
  // spins on it for kSpinNs after each job, then sleeps on its own condition
  // variable, so waking one worker never disturbs another.
  struct alignas(64) Worker {
    std::atomic<uint64_t> go{0};
    std::atomic<bool> sleeping{false};
    std::mutex mutex;
    std::condition_variable cv;
    std::thread thread;

    void post() {
      go.fetch_add(1, std::memory_order_seq_cst);
      if (sleeping.load(std::memory_order_seq_cst)) {
        std::lock_guard<std::mutex> lk(mutex);
        cv.notify_one();
      }
    }

    uint64_t wait(uint64_t seen) {
      const int64_t deadline = now_ns() + kSpinNs;
      for (int i = 0;; ++i) {
        const uint64_t g = go.load(std::memory_order_acquire);
        if (g != seen) return g;
        PYSPARSE_PAUSE();
        if ((i & 255) == 255 && now_ns() > deadline) break;
      }
      std::unique_lock<std::mutex> lk(mutex);
      sleeping.store(true, std::memory_order_seq_cst);
      uint64_t g;
      cv.wait(lk, [&] { return (g = go.load(std::memory_order_seq_cst)) != seen; });
      sleeping.store(false, std::memory_order_relaxed);
      return g;
    }
  };

  void start_worker() {
    Worker* w = new Worker();  // lives as long as the process (see pool())
    const int index = static_cast<int>(workers_.size());
    workers_.push_back(w);
    w->thread = std::thread([this, w, index] {
      uint64_t seen = 0;
      for (;;) {
        seen = w->wait(seen);
        work(index);
      }
    });
    w->thread.detach();
  }

  std::atomic<int> requested_;
  std::mutex run_mutex_;
  std::vector<Worker*> workers_;
  TaskFn job_fn_ = nullptr;
  void* job_ctx_ = nullptr;
  int job_n_ = 0;
  int job_workers_ = 0;  // workers 0 .. job_workers_ - 1 take part in the job
  uint64_t generation_ = 0;  // the caller's count of jobs posted (under run_mutex_)
  // The job's state: generation << kGenShift | kClosed | workers joined. The
  // generation makes a worker's join fail if the job it saw open was closed
  // and a new one opened in between (its CAS expects the old word).
  static constexpr int kGenShift = 32;
  static constexpr uint64_t kClosed = uint64_t{1} << 31;
  static constexpr uint64_t kJoinedMask = kClosed - 1;
  alignas(64) std::atomic<uint64_t> state_{kClosed};
  alignas(64) std::atomic<int> next_task_{0};  // the next unclaimed task of the job
};

Pool& pool() {
  // Leaked: workers must not be joined during static destruction at exit.
  static Pool* p = [] {
    Pool* created = new Pool();
#if defined(__linux__)
    pthread_atfork(nullptr, nullptr, [] { pool().after_fork_child(); });
#endif
    return created;
  }();
  return *p;
}

}  // namespace

int default_num_threads() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    std::set<std::pair<std::string, std::string>> cores;
    int cpus = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (!CPU_ISSET(cpu, &set)) continue;
      ++cpus;
      const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
      std::ifstream pkg(base + "physical_package_id"), core(base + "core_id");
      std::string p, c;
      if (pkg >> p && core >> c) {
        cores.insert({p, c});
      } else {
        cores.insert({"cpu", std::to_string(cpu)});
      }
    }
    if (!cores.empty()) return std::min<int>(static_cast<int>(cores.size()), kMaxThreads);
    if (cpus > 0) return std::min(cpus, kMaxThreads);
  }
#endif
  const unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : std::min<int>(static_cast<int>(hc), kMaxThreads);
}

int get_num_threads() { return pool().requested(); }

void set_num_threads(int n) {
  if (n < 1 || n > kMaxThreads) {
    throw std::invalid_argument("number of threads must be between 1 and " + std::to_string(kMaxThreads) +
                                ", got " + std::to_string(n));
  }
  pool().resize(n);
}

void parallel_run(int n, int threads, TaskFn fn, void* ctx) { pool().run(n, threads, fn, ctx); }

}  // namespace pysparse
