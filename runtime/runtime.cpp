#include "weft/runtime.hpp"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "scheduler.hpp"

namespace weft {


WorkerStats RuntimeStats::total() const {
  WorkerStats sum;
  for (const WorkerStats& w : workers) {
    sum.tasks_run += w.tasks_run;
    sum.tasks_spawned += w.tasks_spawned;
    sum.steals += w.steals;
    sum.steal_attempts += w.steal_attempts;
    sum.parks += w.parks;
  }
  return sum;
}

namespace {
const RuntimeOptions& validated(const RuntimeOptions& options) {
  if (options.max_blocking_threads == 0)
    throw UsageError("RuntimeOptions::max_blocking_threads must be at least 1");
  if (options.workers > kMaxWorkers)
    throw UsageError("RuntimeOptions::workers must be at most " + std::to_string(kMaxWorkers) +
                     ", not " + std::to_string(options.workers));
  return options;
}
}  // namespace

Runtime::Runtime(RuntimeOptions options)
    : scheduler_(std::make_unique<detail::Scheduler>(validated(options))) {}

Runtime::~Runtime() {
  // Waiting for our own threads to finish would never return. Not throwable from a destructor,
  // and continuing would be a use-after-free: stop loudly.
  if (on_worker_thread()) {
    std::fputs("weft: a Runtime was destroyed from one of its own worker threads\n", stderr);
    std::terminate();
  }
  if (scheduler_->timers().is_own_thread()) {
    // A cancellation callback run because a deadline fired: the timed task cannot end while
    // its timer's callback (this call) runs.
    std::fputs("weft: a Runtime was destroyed from its own timer thread (by a cancellation "
               "callback run when a deadline fired)\n",
               stderr);
    std::terminate();
  }
  if (scheduler_->blocking_pool().is_own_thread()) {
    std::fputs("weft: a Runtime was destroyed by a call running on its own blocking pool\n",
               stderr);
    std::terminate();
  }
  scheduler_->cancel_roots_and_wait();
}

unsigned Runtime::workers() const noexcept { return scheduler_->worker_count(); }

RuntimeStats Runtime::stats() const { return scheduler_->stats(); }

bool Runtime::on_worker_thread() const noexcept {
  return scheduler_->is_own_worker(detail::tl_worker);
}

void Runtime::require_not_own_worker(const char* what) const {
  if (on_worker_thread())
    throw UsageError(std::string(what) +
                     " called on one of the runtime's own workers would deadlock; "
                     "co_await the task instead");
}

void Runtime::require_not_own_thread(const char* what) const {
  require_not_own_worker(what);
  if (scheduler_->blocking_pool().is_own_thread())
    throw UsageError(std::string(what) +
                     " called on one of the runtime's own blocking-pool threads could deadlock "
                     "(the task's own to_thread calls wait for a pool thread, and this one is "
                     "held); return to the task and co_await there instead");
  if (scheduler_->timers().is_own_thread())
    throw UsageError(std::string(what) +
                     " called on the runtime's own timer thread would deadlock (no timer "
                     "fires while it waits)");
}

void Runtime::start_root(detail::RootStateBase& state, std::coroutine_handle<> root) {
  if (scheduler_->add_root(state)) {
    detail::schedule(*scheduler_, root);
    return;
  }
  // Shutdown has begun: the task never starts (destroying the unstarted root frame destroys
  // it), and its Future reports why. The root's reference goes with its frame.
  root.destroy();
  state.exception = std::make_exception_ptr(
      UsageError("weft: Runtime::submit after the runtime began shutting down (~Runtime): the "
                 "task was not started"));
  state.complete();
  state.release();
}

namespace {
unsigned workers_from_environment() {
  const char* text = std::getenv("WEFT_WORKERS");
  if (text == nullptr || *text == '\0') return 0;
  char* end = nullptr;
  const unsigned long n = std::strtoul(text, &end, 10);
  if (*end != '\0' || n == 0 || n > kMaxWorkers)
    throw UsageError("WEFT_WORKERS must be a worker count from 1 to " +
                     std::to_string(kMaxWorkers) + ", not '" + text + "'");
  return static_cast<unsigned>(n);
}
}  // namespace

Runtime& default_runtime() {
  static Runtime runtime(RuntimeOptions{.workers = workers_from_environment()});
  return runtime;
}

}  // namespace weft
