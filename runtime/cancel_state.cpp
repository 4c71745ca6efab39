#include "weft/detail/cancel_state.hpp"

#include <cstddef>
#include <mutex>

namespace weft::detail {

CancelState::CancelState() noexcept
    : validated_epoch_(g_cancel_epoch.load(std::memory_order_acquire)),
      parent_(nullptr),
      deadline_(TimePoint::max()) {}

CancelState::CancelState(CancelState* parent, TimePoint deadline) noexcept
    // Not cancelled here, and the parent's chain was not cancelled as of its validated epoch:
    // so neither is this scope as of that epoch.
    : validated_epoch_(parent != nullptr
                           ? parent->validated_epoch_.load(std::memory_order_relaxed)
                           : g_cancel_epoch.load(std::memory_order_acquire)),
      parent_(parent),
      deadline_(parent != nullptr && parent->deadline_ < deadline ? parent->deadline_
                                                                  : deadline) {}

CancelState::~CancelState() {
  if (SharedCancelState* m = mirror_.load(std::memory_order_acquire)) {
    remove_callback(m->mirror_link_);
    m->release();
  }
  // Acquire pairs with the release store of kLinked in materialize().
  if (link_state_.load(std::memory_order_acquire) == kLinked) parent_->remove_callback(link_);
}

SharedCancelState* CancelState::mirror() {
  SharedCancelState* m = mirror_.load(std::memory_order_acquire);
  if (m == nullptr) {
    SharedCancelState* fresh = SharedCancelState::make(nullptr);
    fresh->mirror_link_.owner = fresh;
    fresh->mirror_link_.run = [](CancelCallbackNode* node) noexcept {
      static_cast<SharedCancelState::MirrorNode*>(node)->owner->state().cancel();
    };
    // acq_rel: publishes the new state; acquire on failure sees the winner's.
    if (mirror_.compare_exchange_strong(m, fresh, std::memory_order_acq_rel,
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

bool CancelState::cancel() noexcept {
  // acq_rel: one winner; pairs with the acquire loads in check_ancestors().
  if (cancelled_.exchange(true, std::memory_order_acq_rel)) return false;
  // Release: a check that sees the new epoch sees our flag (see is_cancelled()).
  g_cancel_epoch.fetch_add(1, std::memory_order_release);
  lock_.lock();
  closed_ = true;
  while (CancelCallbackNode* node = callbacks_) {
    callbacks_ = node->next;
    if (callbacks_ != nullptr) callbacks_->prev = nullptr;
    node->next = nullptr;
    node->registered = false;
    running_ = node;
    running_thread_ = std::this_thread::get_id();
    lock_.unlock();
    node->run(node);  // may free `node` once remove_callback() sees running_ change
    lock_.lock();
    running_ = nullptr;
  }
  lock_.unlock();
  return true;
}

bool CancelState::add_callback(CancelCallbackNode& node) noexcept {
  if (!materialize()) return false;
  std::lock_guard<SpinLock> guard(lock_);
  if (closed_) return false;
  node.prev = nullptr;
  node.next = callbacks_;
  if (callbacks_ != nullptr) callbacks_->prev = &node;
  callbacks_ = &node;
  node.registered = true;
  return true;
}

void CancelState::remove_callback(CancelCallbackNode& node) noexcept {
  lock_.lock();
  if (node.registered) {
    if (node.prev != nullptr) node.prev->next = node.next;
    else callbacks_ = node.next;
    if (node.next != nullptr) node.next->prev = node.prev;
    node.registered = false;
    lock_.unlock();
    return;
  }
  // Not in the list: it already ran, or it is running. Wait unless it runs on this thread
  // (a callback that removes itself).
  while (running_ == &node && running_thread_ != std::this_thread::get_id()) {
    lock_.unlock();
    std::this_thread::yield();
    lock_.lock();
  }
  lock_.unlock();
}

bool CancelState::materialize() noexcept {
  if (parent_ == nullptr) return !cancelled_here();
  std::uint8_t state = link_state_.load(std::memory_order_acquire);
  if (state == kLinked) return true;
  if (state == kUnlinked &&
      link_state_.compare_exchange_strong(state, kLinking, std::memory_order_acquire,
                                          std::memory_order_acquire)) {
    link_.run = &cancel_linked_child;
    link_.child = this;
    if (!parent_->add_callback(link_)) {
      // An ancestor is cancelled: so are we. Leave unlinked (nothing to remove later).
      link_state_.store(kUnlinked, std::memory_order_release);
      cancel();
      return false;
    }
    // Release pairs with the acquire loads of link_state_ here and in the destructor.
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
