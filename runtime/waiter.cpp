#include "weft/detail/waiter.hpp"

#include <cassert>
#include <cstdio>
#include <exception>

namespace weft::detail {

void Waiter::on_cancel(CancelCallbackNode* node) noexcept {
  auto* w = static_cast<Waiter*>(node);
  // Claim the waiter unless the primitive has notified it already.
  std::uint8_t seen = w->state.load(std::memory_order_acquire);
  while ((seen == kSetup || seen == kWaiting) &&
         !w->state.compare_exchange_weak(seen, kCancelled, std::memory_order_acq_rel)) {
  }
  const bool claimed = seen == kSetup || seen == kWaiting;
  // A claimed Setup waiter was never linked (its start_waiting() fails and the task goes on
  // by itself); leave() tolerates that.
  if (claimed) w->leave(w);
  Scheduler* const scheduler = w->scheduler;
  const std::coroutine_handle<> handle = w->handle;
  // The last touch of the node (marks_own_completion): release pairs with the acquire in
  // remove_callback(), so the resumed task may free it at once, wherever it runs.
  w->ran.store(true, std::memory_order_release);
  if (claimed && seen == kWaiting) resume_waiter(scheduler, handle);
}

void resume_waiter(Scheduler* s, std::coroutine_handle<> h) {
  if (s != nullptr) schedule(*s, h);
  else h.resume();
}

bool WaiterList::any_waiting() const noexcept {
  for (Waiter* w = head_; w != nullptr; w = w->queue_next)
    // Acquire pairs with the acq_rel CAS in on_cancel(): a claim is seen before its leave().
    if (w->state.load(std::memory_order_acquire) != Waiter::kCancelled) return true;
  return false;
}

void WaiterList::push_back(Waiter& w) noexcept {
  assert(!w.queued && "a Waiter is linked into one queue once");
  assert(w.state.load(std::memory_order_relaxed) != Waiter::kSetup &&
         "start_waiting() comes before linking");
  w.queue_prev = tail_;
  w.queue_next = nullptr;
  if (tail_ != nullptr) tail_->queue_next = &w;
  else head_ = &w;
  tail_ = &w;
  w.queued = true;
}

bool WaiterList::remove(Waiter& w) noexcept {
  if (!w.queued) return false;
  if (w.queue_prev != nullptr) w.queue_prev->queue_next = w.queue_next;
  else head_ = w.queue_next;
  if (w.queue_next != nullptr) w.queue_next->queue_prev = w.queue_prev;
  else tail_ = w.queue_prev;
  w.queued = false;
  assert((head_ == nullptr) == (tail_ == nullptr));
  return true;
}

Waiter* WaiterList::claim_first() noexcept {
  for (Waiter* w = head_; w != nullptr; w = w->queue_next) {
    // A waiter that fails the claim was cancelled: it stays linked until its leave().
    if (w->claim_for_wake()) {
      remove(*w);
      w->queue_next = nullptr;  // ours until resumed: the link now chains claimed waiters
      return w;
    }
  }
  return nullptr;
}

Waiter* WaiterList::claim_all() noexcept {
  Waiter* chain = nullptr;
  Waiter** chain_tail = &chain;
  for (Waiter* w = head_; w != nullptr;) {
    Waiter* next = w->queue_next;
    if (w->claim_for_wake()) {
      remove(*w);
      w->queue_next = nullptr;
      *chain_tail = w;
      chain_tail = &w->queue_next;
    }
    w = next;
  }
  return chain;
}

void resume_chain(Waiter* chain, const Waiter* except) noexcept {
  while (chain != nullptr) {
    Waiter* next = chain->queue_next;  // read first: a resumed task may free its waiter
    if (chain != except) resume_waiter(chain->scheduler, chain->handle);
    chain = next;
  }
}

void die_destroyed_while_waited_on(const char* what) noexcept {
  std::fprintf(stderr, "weft: %s was destroyed while tasks were waiting on it\n", what);
  std::terminate();
}

}  // namespace weft::detail
