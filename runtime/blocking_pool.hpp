// The runtime's blocking pool: threads apart from the workers that run to_thread() calls.
// Private to the runtime library.
//
// Rules.
//   - Grown on demand: a submission starts a thread when no idle thread is left to take it
//     and fewer than `max_threads` exist; at the bound, calls queue and run in FIFO order as
//     threads free up.
//   - A thread that has been idle for `keep_alive` exits (its std::thread is joined by the
//     next submission or by shutdown()).
//   - A queued call whose awaiter was cancelled before a thread took it is skipped (its
//     awaiter has already seen Cancelled: asyncio's run_in_executor does the same with a
//     future that was cancelled before it started). A call that started runs to its end.
//   - shutdown() (from ~Runtime, once every task has ended) lets the threads drain the queue
//     and joins them: it waits for every running call to return, however long it blocks.
//
// Invariant (under mutex_): idle_ threads wait on work_; queued_ jobs are linked from head_;
// a submission starts a thread iff queued_ > idle_ (a notified thread counts as idle until it
// pops, so two quick submissions do not share one idle thread) and live_ < max_threads_.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <list>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "weft/detail/blocking_job.hpp"

namespace weft::detail {

class BlockingPool {
 public:
  BlockingPool(std::string thread_name, unsigned max_threads,
               std::chrono::steady_clock::duration keep_alive);
  // shutdown().
  ~BlockingPool();
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  // Queues `job` and takes a reference on it (see submit_blocking()).
  void submit(BlockingJob& job);
  // Stops taking calls, lets the threads finish what is queued (skipping abandoned calls)
  // and joins them. Idempotent.
  void shutdown() noexcept;

  // Threads alive now (busy or idle).
  unsigned live_threads() const;
  // True on one of this pool's own threads.
  bool is_own_thread() const noexcept;

 private:
  using ThreadList = std::list<std::thread>;
  void run_thread(ThreadList::iterator self);
  void start_thread_locked();

  const std::string thread_name_;
  const unsigned max_threads_;
  const std::chrono::steady_clock::duration keep_alive_;

  mutable std::mutex mutex_;
  std::condition_variable work_;  // signalled on submission and on shutdown
  BlockingJob* head_ = nullptr;   // FIFO of queued jobs, guarded by mutex_
  BlockingJob* tail_ = nullptr;
  std::size_t queued_ = 0;        // guarded by mutex_, as are the fields below
  unsigned idle_ = 0;
  unsigned live_ = 0;
  bool closed_ = false;
  ThreadList threads_;                // live threads; each knows its own node
  std::vector<std::thread> retired_;  // exited (or exiting) threads, to be joined
};

}  // namespace weft::detail
