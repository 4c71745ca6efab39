#include "weft/detail/cancel_state.hpp"

#include <cstddef>
#include <cstdio>
#include <exception>
#include <mutex>

namespace weft::detail {

void report_throwing_cancellation_callback() noexcept {
  const char* what = "an exception that is not a std::exception";
  try {
    throw;
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  std::fprintf(stderr,
               "weft: a CancellationCallback's function threw (%s); cancellation callbacks "
               "run inside cancel() and must not throw\n",
               what);
  std::terminate();
}

CancelState::Slow& CancelState::slow() noexcept {
  // Acquire pairs with the acq_rel CAS below: the winner's Slow is fully constructed.
  Slow* s = slow_.load(std::memory_order_acquire);
  if (s != nullptr) return *s;
  auto* fresh = new Slow;
  if (slow_.compare_exchange_strong(s, fresh, std::memory_order_acq_rel,
                                    std::memory_order_acquire))
    return *fresh;
  delete fresh;
  return *s;
}

void CancelState::release_slow() noexcept {
  Slow* s = slow_.load(std::memory_order_acquire);
  // First leave the parent, waiting for a cancellation from above that is running our link
  // (and so our cancel(), mirror included); only then may the mirror go.
  // Acquire pairs with the release store of kLinked in materialize().
  if (link_state_.load(std::memory_order_acquire) == kLinked) parent_->remove_callback(s->link);
  if (SharedCancelState* m = s->mirror.load(std::memory_order_acquire)) {
    remove_callback(m->mirror_link_);
    m->release();
  }
  delete s;
}

SharedCancelState* CancelState::mirror() {
  Slow& s = slow();
  SharedCancelState* m = s.mirror.load(std::memory_order_acquire);
  if (m == nullptr) {
    SharedCancelState* fresh = SharedCancelState::make(nullptr);
    fresh->mirror_link_.owner = fresh;
    fresh->mirror_link_.run = [](CancelCallbackNode* node) noexcept {
      static_cast<SharedCancelState::MirrorNode*>(node)->owner->state().cancel();
    };
    // acq_rel: publishes the new state; acquire on failure sees the winner's.
    if (s.mirror.compare_exchange_strong(m, fresh, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
      m = fresh;
      if (!add_callback(m->mirror_link_)) m->state().cancel();
    } else {
      fresh->release();
    }
  }
  m->add_ref();
  return m;
}

SharedCancelState::SharedCancelState(SharedCancelState* parent)
    : parent_ref_{parent}, state_(parent != nullptr ? &parent->state_ : nullptr) {
  if (parent != nullptr) parent->add_ref();
}

SharedCancelState* SharedCancelState::make(SharedCancelState* parent) {
  return new SharedCancelState(parent);
}

void SharedCancelState::release() noexcept {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

bool CancelState::check_ancestors(std::uint64_t epoch) const noexcept {
  // Relaxed: a cache of the acquire loads below.
  if (ancestor_cancelled_.load(std::memory_order_relaxed)) return true;
  for (const CancelState* s = this; s != nullptr; s = s->parent_) {
    // Acquire pairs with the exchange in cancel(), ordered before the epoch bump we saw.
    if (s->cancelled_.load(std::memory_order_acquire)) {
      if (s != this) ancestor_cancelled_.store(true, std::memory_order_relaxed);
      return true;
    }
  }
  validated_epoch_.store(epoch, std::memory_order_relaxed);
  return false;
}

bool CancelState::mark() noexcept {
  // acq_rel: one winner; pairs with the acquire loads in check_ancestors().
  if (cancelled_.exchange(true, std::memory_order_acq_rel)) return false;
  // Release: a check that sees the new epoch sees our flag (see is_cancelled()).
  g_cancel_epoch.fetch_add(1, std::memory_order_release);
  // Acquire pairs with the CAS that installed it (slow()).
  Slow* s = slow_.load(std::memory_order_acquire);
  if (s == nullptr) return true;
  // Under our lock a linked child cannot unlink, so it is alive while we mark it. Locks nest
  // parent before child only.
  std::lock_guard<SpinLock> guard(s->lock);
  if (SharedCancelState* m = s->mirror.load(std::memory_order_acquire)) m->state().mark();
  for (CancelCallbackNode* node = s->callbacks; node != nullptr; node = node->next)
    if (node->run == &cancel_linked_child) static_cast<LinkNode*>(node)->child->mark();
  return true;
}

void CancelState::run_callbacks() noexcept {
  Slow& s = slow();
  s.lock.lock();
  if (s.closed) {  // another thread runs (or ran) them
    s.lock.unlock();
    return;
  }
  s.closed = true;
  while (CancelCallbackNode* node = s.callbacks) {
    s.callbacks = node->next;
    if (s.callbacks != nullptr) s.callbacks->prev = nullptr;
    node->next = nullptr;
    node->registered = false;
    s.running = node;
    s.running_thread = std::this_thread::get_id();
    const bool marks_own_completion = node->marks_own_completion;
    s.lock.unlock();
    node->run(node);
    s.lock.lock();
    // Unless the callback removed (and maybe freed) itself, which cleared `running`, or
    // marked its own completion (after which its owner may have freed it): release pairs
    // with the acquire in remove_callback(); `node` may be freed from here on.
    if (s.running == node && !marks_own_completion)
      node->ran.store(true, std::memory_order_release);
    s.running = nullptr;
  }
  s.lock.unlock();
}

bool CancelState::cancel() noexcept {
  // Every flag below (linked scopes, token mirrors) is set before any callback runs, so a
  // callback anywhere sees the whole subtree cancelled.
  const bool first = mark();
  run_callbacks();
  return first;
}

bool CancelState::add_callback(CancelCallbackNode& node) noexcept {
  if (!materialize()) return false;
  Slow& s = slow();
  std::lock_guard<SpinLock> guard(s.lock);
  if (s.closed) return false;
  node.prev = nullptr;
  node.next = s.callbacks;
  if (s.callbacks != nullptr) s.callbacks->prev = &node;
  s.callbacks = &node;
  node.registered = true;
  node.ran.store(false, std::memory_order_relaxed);  // a node may be registered again
  return true;
}

void CancelState::remove_callback(CancelCallbackNode& node) noexcept {
  if (node.ran.load(std::memory_order_acquire)) return;  // ran and returned: nothing to wait for
  Slow& s = slow();
  s.lock.lock();
  if (node.registered) {
    if (node.prev != nullptr) node.prev->next = node.next;
    else s.callbacks = node.next;
    if (node.next != nullptr) node.next->prev = node.prev;
    node.registered = false;
    s.lock.unlock();
    return;
  }
  // Not in the list: it already ran, or it is running. A callback that removes itself
  // tells the runner to leave its node alone from now on; any other thread waits for it.
  if (s.running == &node && s.running_thread == std::this_thread::get_id()) s.running = nullptr;
  while (s.running == &node) {
    s.lock.unlock();
    std::this_thread::yield();
    s.lock.lock();
  }
  s.lock.unlock();
}

bool CancelState::materialize() noexcept {
  if (parent_ == nullptr) return !cancelled_here();
  std::uint8_t state = link_state_.load(std::memory_order_acquire);
  if (state == kLinked) return true;
  if (state == kUnlinked &&
      link_state_.compare_exchange_strong(state, kLinking, std::memory_order_acquire,
                                          std::memory_order_acquire)) {
    LinkNode& link = slow().link;
    link.run = &cancel_linked_child;
    link.child = this;
    if (!parent_->add_callback(link)) {
      // An ancestor is cancelled: so are we. Leave unlinked (nothing to remove later).
      link_state_.store(kUnlinked, std::memory_order_release);
      cancel();
      return false;
    }
    // Release pairs with the acquire loads of link_state_ here and in release_slow().
    link_state_.store(kLinked, std::memory_order_release);
    return true;
  }
  // Another thread is linking this scope: wait for it (a few pointer writes).
  while ((state = link_state_.load(std::memory_order_acquire)) == kLinking)
    std::this_thread::yield();
  return state == kLinked || !is_cancelled();
}

void CancelState::cancel_linked_child(CancelCallbackNode* node) noexcept {
  static_cast<LinkNode*>(node)->child->cancel();
}

}  // namespace weft::detail
