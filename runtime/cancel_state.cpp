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

void CancelState::unlink_from_parent() noexcept {
  Slow* s = slow_.load(std::memory_order_acquire);
  // Waits for a cancellation from above that is running our link (and so our cancel(),
  // mirror included). Acquire pairs with the release store of kLinked in materialize().
  if (link_state_.load(std::memory_order_acquire) == kLinked) {
    parent_->remove_callback(s->link);
    // Relaxed: only this scope's owner reads it again (release_slow()).
    link_state_.store(kUnlinked, std::memory_order_relaxed);
  }
}

void CancelState::release_slow() noexcept {
  Slow* s = slow_.load(std::memory_order_acquire);
  // First leave the parent; only then may the mirror go.
  unlink_from_parent();
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
    fresh->mirror_link_.run = &cancel_mirror;
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
    if (s->settled_phase() == kCancelled) {
      if (s != this) ancestor_cancelled_.store(true, std::memory_order_relaxed);
      return true;
    }
  }
  validated_epoch_.store(epoch, std::memory_order_relaxed);
  return false;
}

std::uint8_t CancelState::settled_phase() const noexcept {
  // Acquire pairs with the release store of kCancelled in mark(). A scope being marked is
  // about to be published with its whole subtree: wait for it (the canceller waits for no
  // reader), so that no reader answers "not cancelled" once another may answer "cancelled".
  std::uint8_t phase;
  while ((phase = phase_.load(std::memory_order_acquire)) == kMarking) std::this_thread::yield();
  return phase;
}

bool CancelState::claim(CancelState* s) noexcept {
  std::uint8_t expected = kLive;
  // acq_rel: one canceller wins; acquire on failure pairs with the winner's CAS.
  if (s->phase_.compare_exchange_strong(expected, kMarking, std::memory_order_acq_rel,
                                        std::memory_order_acquire))
    return true;
  // Another canceller has `s` and its subtree (which we never lock: no deadlock). Wait until
  // it published them, so that our publication does not come before theirs.
  s->settled_phase();
  return false;
}

CancelState* CancelState::child_of(CancelCallbackNode* node) noexcept {
  if (node->run == &cancel_linked_child) return static_cast<LinkNode*>(node)->child;
  if (node->run == &cancel_mirror)
    return &static_cast<SharedCancelState::MirrorNode*>(node)->owner->state();
  return nullptr;
}

bool CancelState::mark() noexcept {
  if (!claim(this)) return false;
  // The next scope our list leads to (a linked child, a token mirror), advancing the cursor.
  const auto next_child = [](Slow& s) noexcept -> CancelState* {
    while (CancelCallbackNode* node = s.mark_cursor) {
      s.mark_cursor = node->next;
      if (CancelState* child = child_of(node)) return child;
    }
    return nullptr;
  };
  // Phase 1: claim every scope of the linked subtree that no other canceller has, depth first
  // without recursion (the way back is kept in each scope's Slow part), locking each and
  // keeping all of them locked: no list in the subtree changes, and no scope in it can unlink
  // and be freed, until phase 3. Locks nest parent before child only.
  const auto enter = [](CancelState* scope, CancelState* from) noexcept -> Slow* {
    Slow* s = &scope->slow();
    s->lock.lock();
    s->mark_cursor = s->callbacks;
    s->mark_return = from;
    return s;
  };
  CancelState* scope = this;
  Slow* s = enter(this, nullptr);
  for (;;) {
    if (CancelState* child = next_child(*s)) {
      if (claim(child)) {
        s = enter(child, scope);
        scope = child;
      }
      continue;
    }
    if (scope == this) break;
    scope = s->mark_return;
    // Relaxed: we entered (and locked) it on the way down, so it is there.
    s = scope->slow_.load(std::memory_order_relaxed);
  }
  // Phase 2. Release: a check that sees the new epoch (and so walks) sees our scopes marked,
  // and waits for them.
  g_cancel_epoch.fetch_add(1, std::memory_order_release);
  // Phase 3: the same walk (the lists have not changed) publishes each claimed scope and
  // unlocks it. Readers that met a scope marked waited, so the subtree turns cancelled at once
  // for every reader: none sees a scope cancelled and one below (or above) it not.
  s = this->slow_.load(std::memory_order_relaxed);
  s->mark_cursor = s->callbacks;
  scope = this;
  for (;;) {
    if (CancelState* child = next_child(*s)) {
      // Relaxed: marked by this thread in phase 1; a scope another canceller had is published.
      if (child->phase_.load(std::memory_order_relaxed) == kMarking) {
        s = child->slow_.load(std::memory_order_relaxed);
        s->mark_cursor = s->callbacks;
        scope = child;
      }
      continue;
    }
    // Release pairs with the acquire loads of settled_phase().
    scope->phase_.store(kCancelled, std::memory_order_release);
    CancelState* parent = s->mark_return;
    s->lock.unlock();
    if (scope == this) break;
    scope = parent;
    s = parent->slow_.load(std::memory_order_relaxed);
  }
  return true;
}

void CancelState::run_callbacks() noexcept {
  // Runs this scope's list and, in place of recursion, the lists of the linked children and
  // mirrors it leads to: while we are in a child's list the parent's `running` names our way
  // in (its link or mirror node), so the child's removal from the parent waits for us and the
  // child stays alive, as it did while a recursive cancel() ran.
  const auto finish = [](Slow& s, CancelCallbackNode* node, bool marks_own_completion) noexcept {
    // Unless the callback removed (and maybe freed) itself, which cleared `running`, or
    // marked its own completion (after which its owner may have freed it): release pairs
    // with the acquire in remove_callback(); `node` may be freed from here on.
    if (s.running == node && !marks_own_completion)
      node->ran.store(true, std::memory_order_release);
    s.running = nullptr;
  };
  Slow* s = &slow();
  s->lock.lock();
  if (s->closed) {  // another thread runs (or ran) them
    s->lock.unlock();
    return;
  }
  s->closed = true;
  s->run_return = nullptr;
  s->run_via = nullptr;
  CancelState* scope = this;
  for (;;) {
    CancelCallbackNode* node = s->callbacks;
    if (node == nullptr) {
      CancelState* parent = s->run_return;
      CancelCallbackNode* via = s->run_via;
      s->lock.unlock();
      if (parent == nullptr) return;  // back at this scope: done
      scope = parent;
      // Relaxed: its list is being run by us, so its Slow part is there.
      s = parent->slow_.load(std::memory_order_relaxed);
      s->lock.lock();
      finish(*s, via, false);
      continue;
    }
    s->callbacks = node->next;
    if (s->callbacks != nullptr) s->callbacks->prev = nullptr;
    node->next = nullptr;
    node->registered = false;
    s->running = node;
    s->running_thread = std::this_thread::get_id();
    if (CancelState* child = child_of(node)) {
      s->lock.unlock();
      child->mark();  // usually marked already, with us (returns at once)
      Slow* cs = &child->slow();
      cs->lock.lock();
      if (cs->closed) {  // another thread runs (or ran) its list
        cs->lock.unlock();
        s->lock.lock();
        finish(*s, node, false);
        continue;
      }
      cs->closed = true;
      cs->run_return = scope;
      cs->run_via = node;
      scope = child;
      s = cs;
      continue;
    }
    const bool marks_own_completion = node->marks_own_completion;
    s->lock.unlock();
    node->run(node);
    s->lock.lock();
    finish(*s, node, marks_own_completion);
  }
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
  return add_to_list(node);
}

bool CancelState::add_to_list(CancelCallbackNode& node) noexcept {
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
  // Acquire pairs with the release store of kLinked below: the chain above is linked.
  if (link_state_.load(std::memory_order_acquire) == kLinked) return true;
  // Climb, claiming every unlinked scope from here up to the first linked one (or a root),
  // each remembering the claimed scope below it. A scope another thread is linking is waited
  // for: that thread only climbs, above the scopes we hold, so waiting cannot deadlock.
  CancelState* top = nullptr;
  for (CancelState* scope = this; scope->parent_ != nullptr;) {
    // Acquire pairs with the release stores of link_state_ below.
    std::uint8_t state = scope->link_state_.load(std::memory_order_acquire);
    if (state == kLinked) break;
    if (state == kLinking) {
      std::this_thread::yield();
      continue;  // look again: linked now, or back to unlinked after a failure
    }
    if (scope->link_state_.compare_exchange_strong(state, kLinking, std::memory_order_acquire,
                                                   std::memory_order_acquire)) {
      scope->slow().link_below = top;
      top = scope;
      scope = scope->parent_;
    }
  }
  // Link top-down: each scope into its parent, whose chain is linked by then. Once an
  // ancestor turns out cancelled (its list is closed), every scope left below is cancelled
  // too and stays unlinked (nothing to remove later). `top` is the scope claimed last, the
  // highest; link_below leads down to this one.
  bool linked = true;
  while (top != nullptr) {
    Slow& s = top->slow();
    CancelState* below = s.link_below;
    if (linked) {
      s.link.run = &cancel_linked_child;
      s.link.child = top;
      linked = top->parent_->add_to_list(s.link);
    }
    if (linked) {
      // Release pairs with the acquire loads of link_state_ here and in release_slow().
      top->link_state_.store(kLinked, std::memory_order_release);
    } else {
      // Release: a thread waiting for kLinking to end claims it again and finds the same.
      top->link_state_.store(kUnlinked, std::memory_order_release);
      top->cancel();  // nothing is linked below it yet: no deep walk
    }
    top = below;
  }
  return linked;
}

void CancelState::cancel_linked_child(CancelCallbackNode* node) noexcept {
  static_cast<LinkNode*>(node)->child->cancel();
}

void CancelState::cancel_mirror(CancelCallbackNode* node) noexcept {
  static_cast<SharedCancelState::MirrorNode*>(node)->owner->state().cancel();
}

}  // namespace weft::detail
