// The executor behind weft::Runtime: worker threads, their deques, stealing, the injection
// queue, parking, and the registry of root tasks. Private to the runtime library.
#pragma once

#include <atomic>
#include <condition_variable>
#include <coroutine>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "blocking_pool.hpp"
#include "injection_queue.hpp"
#include "weft/detail/atomic_shim.hpp"
#include "weft/detail/root.hpp"
#include "weft/detail/timer_service.hpp"
#include "weft/detail/worker.hpp"
#include "weft/runtime.hpp"

namespace weft::detail {

class Scheduler {
 public:
  explicit Scheduler(const RuntimeOptions& options);
  // Drains and joins the blocking pool, stops and joins the timer thread, then stops and
  // joins the workers. Every root must have finished (see cancel_roots_and_wait()).
  ~Scheduler();

  unsigned worker_count() const noexcept { return static_cast<unsigned>(workers_.size()); }
  bool is_own_worker(const Worker* w) const noexcept { return w != nullptr && &w->scheduler == this; }

  // From any thread: make `h` runnable.
  void inject(std::coroutine_handle<> h);

  // Roots: registered when submitted, removed by root_finished(). add_root() refuses (false)
  // once cancel_roots_and_wait() has begun.
  bool add_root(RootStateBase& root);
  void remove_root(RootStateBase& root) noexcept;
  // Cancels every live root and waits until all have finished; later submissions are refused.
  void cancel_roots_and_wait();

  RuntimeStats stats() const;

  // The to_thread pool (blocking_pool.hpp).
  BlockingPool& blocking_pool() noexcept { return blocking_; }
  // Sleeps, timeouts and timed gathers of this runtime's tasks.
  TimerService& timers() noexcept { return timers_; }

  // parking.cpp
  void wake_one(Worker* publisher) noexcept;

 private:
  void run_worker(Worker& w);
  void* find_work(Worker& w);
  void* try_steal(Worker& w);
  bool work_visible() const;
  void park(Worker& w);
  void wake_all() noexcept;
  void start_thread(Worker& w, const RuntimeOptions& options);
  // Tells the workers to exit once idle, wakes them and joins their threads.
  void stop_and_join_workers() noexcept;

  std::vector<std::unique_ptr<Worker>> workers_;
  IdleCount idle_;
  InjectionQueue injected_;
  // seq_cst: checked by a parking worker after announcing itself, set before wake_all().
  detail::atomic<bool> stopping_{false};
  std::vector<std::thread> threads_;
  BlockingPool blocking_;

  std::mutex roots_mutex_;
  std::condition_variable roots_done_;
  RootStateBase* roots_ = nullptr;  // intrusive list, guarded by roots_mutex_
  std::size_t live_roots_ = 0;      // guarded by roots_mutex_
  bool closing_ = false;            // guarded by roots_mutex_

  // Its thread fires into the injection queue, so it stops before the workers do.
  TimerService timers_;
};

}  // namespace weft::detail
