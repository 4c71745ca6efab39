// The blocking pool behind to_thread(): see blocking_pool.hpp for its rules and
// weft/detail/blocking_job.hpp for the protocol between a job, its awaiter and a pool thread.
#include "blocking_pool.hpp"

#include <pthread.h>

#include <cstdio>
#include <exception>
#include <system_error>
#include <utility>

#include "scheduler.hpp"
#include "weft/deadline.hpp"
#include "weft/errors.hpp"

namespace weft::detail {
namespace {
// The pool whose thread this is (null elsewhere): shutdown() from one of its own threads
// would join itself.
thread_local const BlockingPool* tl_pool = nullptr;
}  // namespace

void BlockingJob::complete() noexcept {
  // Acquire on failure: see a cancellation's CAS before giving up.
  std::uint8_t s = waiter.state.load(std::memory_order_acquire);
  for (;;) {
    if (s == Waiter::kCancelled || s == Waiter::kNotified) return;  // nobody waits for us
    // acq_rel: publishes the result to the task (whose end() loads acquire), and is the one
    // winner against the cancellation's CAS.
    if (waiter.state.compare_exchange_weak(s, Waiter::kNotified, std::memory_order_acq_rel,
                                           std::memory_order_acquire)) {
      // From Setup the awaiter is still in await_suspend: its start_waiting() fails and the
      // task goes on by itself.
      if (s == Waiter::kWaiting) resume_waiter(waiter.scheduler, waiter.handle);
      return;
    }
  }
}

void submit_blocking(Scheduler& s, BlockingJob& job) { s.blocking_pool().submit(job); }

BlockingPool::BlockingPool(std::string thread_name, unsigned max_threads,
                           std::chrono::steady_clock::duration keep_alive)
    : thread_name_(std::move(thread_name)), max_threads_(max_threads), keep_alive_(keep_alive) {}

BlockingPool::~BlockingPool() { shutdown(); }

unsigned BlockingPool::live_threads() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return live_;
}

void BlockingPool::submit(BlockingJob& job) {
  std::vector<std::thread> exited;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_)
      throw UsageError("to_thread: the runtime is being destroyed and runs no more blocking calls");
    if (queued_ >= idle_ && live_ < max_threads_) {
      // No idle thread is left for this job: start one (even at the bound, an existing busy
      // thread takes it later). Throws, queueing nothing, when no thread can be started.
      try {
        start_thread_locked();
      } catch (const std::system_error&) {
        if (live_ == 0) throw;  // nobody could ever run it
      }
    }
    job.refs.fetch_add(1, std::memory_order_relaxed);  // the pool's; published by the lock
    job.next = nullptr;
    if (tail_ != nullptr) tail_->next = &job;
    else head_ = &job;
    tail_ = &job;
    ++queued_;
    work_.notify_one();
    exited.swap(retired_);
  }
  for (std::thread& t : exited) t.join();  // threads that retired: they are exiting, or gone
}

void BlockingPool::start_thread_locked() {
  auto self = threads_.emplace(threads_.end());
  try {
    // The new thread blocks on mutex_ (held by our caller) before it looks at `self`.
    *self = std::thread([this, self] { run_thread(self); });
  } catch (...) {
    threads_.erase(self);
    throw;
  }
  ++live_;
}

void BlockingPool::run_thread(ThreadList::iterator self) {
  // Linux thread names hold 15 characters.
  pthread_setname_np(pthread_self(), thread_name_.substr(0, 15).c_str());
  tl_pool = this;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    if (head_ == nullptr) {
      if (closed_) break;  // drained: shutdown() joins us
      ++idle_;
      // Saturating (Deadline::after): wait_for(keep_alive_) would compute now() + keep_alive_,
      // which overflows for Duration::max() and retired the thread at once.
      const Deadline retire_at = Deadline::after(keep_alive_);
      const auto has_work = [&] { return head_ != nullptr || closed_; };
      bool woken;
      if (retire_at.is_never()) {
        work_.wait(lock, has_work);
        woken = true;
      } else {
        woken = work_.wait_until(lock, retire_at.time(), has_work);
      }
      --idle_;
      if (!woken) {
        // Idle for the whole keep-alive: retire. The next submit() or shutdown() joins us.
        retired_.push_back(std::move(*self));
        threads_.erase(self);
        --live_;
        return;
      }
      continue;
    }
    BlockingJob* job = head_;
    head_ = job->next;
    if (head_ == nullptr) tail_ = nullptr;
    --queued_;
    lock.unlock();
    // An abandoned call is skipped: its awaiter saw Cancelled before the call started. So is
    // one whose awaiter's deadline passed while it was queued (SPEC §9): its timer cancels
    // the awaiter, which is still Waiting, and it ends with the timeout's error.
    if (!job->abandoned() && !job->expired()) {
      // The call sees its own copies of its task's ContextVar bindings (detail/context.hpp).
      bool owns_context = job->context != nullptr;  // the copies are the job's own
      ContextSlot slot{&job->context, &owns_context};
      tl_context_override = &slot;
      job->invoke(*job);
      tl_context_override = nullptr;
      job->complete();
    }
    job->release();
    lock.lock();
  }
  --live_;
}

bool BlockingPool::is_own_thread() const noexcept { return tl_pool == this; }

void BlockingPool::shutdown() noexcept {
  if (tl_pool == this) {
    // Joining the pool from one of its calls would wait for that call forever. Not throwable
    // from ~Runtime, and going on would be a use-after-free: stop loudly.
    std::fputs("weft: a Runtime was destroyed by a call running on its own blocking pool\n", stderr);
    std::terminate();
  }
  ThreadList running;
  std::vector<std::thread> exited;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_ && threads_.empty() && retired_.empty()) return;
    closed_ = true;
    work_.notify_all();
    // No thread retires once closed_ is set (their wait ends with the predicate true), so
    // these lists are final. splice keeps the threads' iterators valid.
    running.splice(running.end(), threads_);
    exited.swap(retired_);
  }
  for (std::thread& t : running) t.join();  // each runs the queue dry, then exits
  for (std::thread& t : exited) t.join();
}

}  // namespace weft::detail
