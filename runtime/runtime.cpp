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

// The WorkerStats fields, in the order both formats print them.
constexpr const char* kWorkerFields[] = {"tasks_run", "tasks_spawned", "steals", "steal_attempts",
                                         "parks"};
std::uint64_t worker_field(const WorkerStats& w, int i) {
  const std::uint64_t values[] = {w.tasks_run, w.tasks_spawned, w.steals, w.steal_attempts,
                                  w.parks};
  return values[i];
}
constexpr int kWorkerFieldCount = sizeof(kWorkerFields) / sizeof(kWorkerFields[0]);

void append_worker_json(std::string& out, const WorkerStats& w) {
  out += '{';
  for (int i = 0; i < kWorkerFieldCount; ++i) {
    if (i > 0) out += ',';
    out += '"';
    out += kWorkerFields[i];
    out += "\":";
    out += std::to_string(worker_field(w, i));
  }
  out += '}';
}

void append_worker_row(std::string& out, const char* label, const WorkerStats& w) {
  char cell[32];
  std::snprintf(cell, sizeof cell, "%6s", label);
  out += cell;
  for (int i = 0; i < kWorkerFieldCount; ++i) {
    const int width = static_cast<int>(std::string(kWorkerFields[i]).size());
    std::snprintf(cell, sizeof cell, "  %*llu", width > 10 ? width : 10,
                  static_cast<unsigned long long>(worker_field(w, i)));
    out += cell;
  }
  out += '\n';
}

}  // namespace

std::string RuntimeStats::to_string() const {
  std::string out = "worker";
  char cell[48];
  for (const char* name : kWorkerFields) {
    const int width = static_cast<int>(std::string(name).size());
    std::snprintf(cell, sizeof cell, "  %*s", width > 10 ? width : 10, name);
    out += cell;
  }
  out += '\n';
  for (std::size_t i = 0; i < workers.size(); ++i)
    append_worker_row(out, std::to_string(i).c_str(), workers[i]);
  append_worker_row(out, "total", total());
  out += "frame_heap_allocations " + std::to_string(frame_heap_allocations) + '\n';
  out += "blocking_threads " + std::to_string(blocking_threads) + '\n';
  out += "timers_armed " + std::to_string(timers_armed) + '\n';
  return out;
}

std::string RuntimeStats::to_json() const {
  std::string out = "{\"workers\":[";
  for (std::size_t i = 0; i < workers.size(); ++i) {
    if (i > 0) out += ',';
    append_worker_json(out, workers[i]);
  }
  out += "],\"total\":";
  append_worker_json(out, total());
  out += ",\"frame_heap_allocations\":" + std::to_string(frame_heap_allocations);
  out += ",\"blocking_threads\":" + std::to_string(blocking_threads);
  out += ",\"timers_armed\":" + std::to_string(timers_armed) + '}';
  return out;
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
