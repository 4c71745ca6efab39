// Cancellation states: the tree of scopes that cancellation travels down.
//
// Protocol.
//   Every task runs in a scope (a CancelState): the runtime's root scope of a submitted task,
//   a gather's scope, a TaskGroup's scope, a shield, ... Each scope points at its parent.
//   Cancelling a scope must cancel every scope below it, on every thread, while checking for
//   cancellation must stay as cheap as a load, because it happens at every task start.
//
//   Two paths deliver a cancellation:
//   - Pull, for running code. cancel() sets the scope's flag and then bumps the process-wide
//     cancellation epoch. A check compares the epoch with the last epoch at which this scope
//     was known not to be cancelled (`validated_epoch_`): equal means no scope anywhere was
//     cancelled since, so neither was any ancestor (two loads, no walk). Otherwise the check
//     walks up the parents once, and either finds a cancelled ancestor or records the new
//     epoch as validated.
//     A flag only counts for the fast path once an epoch bump follows it. So that no reader
//     sees a scope cancelled while another scope of the same cancellation (a token mirror, a
//     scope linked below, or the scope above) still reads "not cancelled", cancel() publishes
//     the whole linked subtree at once: it marks every scope of it (kMarking, each locked),
//     bumps the epoch once, then turns each to kCancelled and unlocks it. A check that meets a
//     scope marked waits until it is published (the canceller waits for no reader), and one
//     that sees a scope published has seen the bump, so it walks, and waits, everywhere else.
//   - Push, for waiting code. A task that parks (on a timer, a semaphore, a foreign thread)
//     registers a callback on its scope, which first links the scope's chain into its
//     ancestors (materialize()): each link is a callback node in the parent whose action
//     cancels the child. cancel() runs the callbacks of the scope it cancels, so the
//     cancellation reaches every registered waiter below it and wakes it.
//   A scope that nothing waits in is never linked, so the fork-join path never takes a lock:
//   creating a scope is a few plain stores. Everything the push path needs (the lock, the
//   callback list, the link node, the token mirror) lives in a separately allocated part,
//   made on first use (a callback, a token, a cancel()), so a scope on the fork path is 48
//   bytes and its destructor one load.
//
// Invariants.
//   - A parent outlives its children (scopes live in frames that are joined before they end,
//     or in reference-counted sources), so `parent_` never dangles.
//   - `phase_` only goes kLive -> kMarking (claimed by one canceller) -> kCancelled (visible),
//     once. cancel() first publishes the whole linked subtree (token mirrors included) as
//     above, then runs callbacks: one thread per scope runs that scope's list, once
//     (`closed`). A canceller that finds a scope claimed by another waits until it is
//     published (that one works in a disjoint subtree, so this cannot deadlock).
//   - Linking (materialize()) and cancelling walk the tree with loops, never recursion: a
//     chain of 200,000 nested scopes costs no stack. Linking climbs to the first linked
//     ancestor, then links top-down, so kLinked still means "my whole chain is linked".
//     Marking is a depth-first walk that keeps its way back in each scope's Slow part (under
//     that scope's lock, held until the subtree is published); running the callbacks descends
//     into each linked child's list while the parent's `running` names the link, as the
//     recursion did.
//   - After a scope's callbacks ran the list is empty and closed: add_callback() returns false
//     and the caller runs its action inline.
//   - remove_callback() returns only when the callback is done with the node on every other
//     thread (the std::stop_callback rule), so its owner may free the node right after: when
//     `run` has returned, or, for a node that marks its own completion, when `run` has made its
//     last touch of the node (it may still be running, on memory of its own).
//   - A canceller keeps the scope alive while it runs the list (every canceller owns or waits
//     for the scope: a linked child's removal, a deadline timer's disarm and the references
//     of tokens wait for it), so it may retake the scope's lock after a woken task returned.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include "weft/detail/atomic_shim.hpp"

namespace weft::detail {

// Bumped (release) after every cancel(); read (acquire) by every check: if it has not moved
// since a scope was validated, no scope anywhere was cancelled since, and the flags that
// were set before the bump are visible to a check that sees it.
inline detail::atomic<std::uint64_t> g_cancel_epoch{1};

// The body of every spin-wait loop in weft: tells the core it is spinning.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// A tiny test-and-test-and-set lock for the callback lists: held for a few pointer writes,
// never while a callback runs.
class SpinLock {
 public:
  void lock() noexcept {
    // Acquire pairs with the release in unlock().
    while (locked_.exchange(true, std::memory_order_acquire)) {
      while (locked_.load(std::memory_order_relaxed)) cpu_relax();
    }
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  detail::atomic<bool> locked_{false};
};

// A registered action. Intrusive: the registrant owns the node and must remove it (or see it
// run) before freeing it.
struct CancelCallbackNode {
  void (*run)(CancelCallbackNode* self) noexcept = nullptr;
  CancelCallbackNode* prev = nullptr;  // guarded by the owning state's lock
  CancelCallbackNode* next = nullptr;
  bool registered = false;
  // Set (release) once `run` has finished with the node; remove_callback() that sees it
  // (acquire) returns without the lock. A mass cancellation's woken waiters each remove
  // their node while the canceller still runs the rest of the list under that lock.
  detail::atomic<bool> ran{false};
  // False: cancel() sets `ran` after `run` returns. True: `run` sets `ran` itself, as its
  // last touch of the node, and cancel() does not touch the node after calling it. For a
  // callback that hands its task to another thread (a Waiter): that thread's
  // remove_callback() then never waits for the canceller to come back from `run`.
  bool marks_own_completion = false;
};

class CancelState;
class SharedCancelState;

// Called from a CancellationCallback whose function threw (inside its catch block): prints a
// `weft:` line naming the exception, then std::terminate(). Never returns.
[[noreturn]] void report_throwing_cancellation_callback() noexcept;

using TimePoint = std::chrono::steady_clock::time_point;

class CancelState {
 public:
  // A scope with no parent (a root, a shield, a CancellationSource).
  CancelState() noexcept
      : validated_epoch_(g_cancel_epoch.load(std::memory_order_acquire)),
        parent_(nullptr),
        deadline_(TimePoint::max()) {}
  // A scope below `parent` (which may be null). Inherits the parent's deadline unless
  // `deadline` is earlier.
  explicit CancelState(CancelState* parent, TimePoint deadline = TimePoint::max()) noexcept
      // Not cancelled here, and the parent's chain was not cancelled as of its validated
      // epoch: so neither is this scope as of that epoch.
      : validated_epoch_(parent != nullptr
                             ? parent->validated_epoch_.load(std::memory_order_relaxed)
                             : g_cancel_epoch.load(std::memory_order_acquire)),
        parent_(parent),
        deadline_(inherited_deadline(parent, deadline)),
        deadline_may_move_(parent != nullptr && parent->deadline_may_move_) {}
  // A scope whose deadline may be moved later by set_movable_deadline() (a TimeoutScope's),
  // from any thread. Scopes below it then keep only their own deadline and deadline() walks
  // up to the first scope whose deadline cannot move.
  struct MovableDeadline {};
  CancelState(CancelState* parent, TimePoint deadline, MovableDeadline) noexcept
      : CancelState(parent, deadline) {
    deadline_.store(deadline, std::memory_order_relaxed);
    deadline_may_move_ = true;
  }
  // A scope whose parent is given later by adopt_parent(), before any other use (a fork's
  // scope, made with its awaiter on the hot path before the parent is known).
  struct ParentLater {};
  explicit CancelState(ParentLater) noexcept : parent_(nullptr) {}
  // Re-parents a scope nobody has used yet: as if it had been constructed below `parent`.
  void adopt_parent(CancelState* parent) noexcept {
    parent_ = parent;
    if (parent != nullptr) {
      validated_epoch_.store(parent->validated_epoch_.load(std::memory_order_relaxed),
                             std::memory_order_relaxed);
      deadline_.store(inherited_deadline(parent, TimePoint::max()), std::memory_order_relaxed);
      deadline_may_move_ = parent->deadline_may_move_;
    } else {
      validated_epoch_.store(g_cancel_epoch.load(std::memory_order_acquire),
                             std::memory_order_relaxed);
      deadline_.store(TimePoint::max(), std::memory_order_relaxed);
      deadline_may_move_ = false;
    }
  }
  // Lowers the deadline of a scope nobody has used yet (a timed gather's, between
  // adopt_parent() and its children's start): children inherit the earliest deadline.
  void restrict_deadline(TimePoint deadline) noexcept {
    if (deadline < deadline_.load(std::memory_order_relaxed))
      deadline_.store(deadline, std::memory_order_relaxed);
  }
  // A MovableDeadline scope's new deadline (TimeoutScope::reschedule()); any thread.
  void set_movable_deadline(TimePoint deadline) noexcept {
    deadline_.store(deadline, std::memory_order_relaxed);
  }
  // A MovableDeadline scope's own deadline.
  TimePoint movable_deadline() const noexcept { return deadline_.load(std::memory_order_relaxed); }

  ~CancelState() {
    // Acquire pairs with the CAS that installed it (slow()).
    if (slow_.load(std::memory_order_acquire) != nullptr) [[unlikely]]
      release_slow();
  }
  CancelState(const CancelState&) = delete;
  CancelState& operator=(const CancelState&) = delete;

  // True when this scope or any ancestor was cancelled. Two loads when nothing was cancelled
  // anywhere since this scope was last validated.
  bool is_cancelled() const noexcept {
    // Acquire pairs with the release bump in cancel(): a flag set before the bump we see is
    // visible to the walk.
    const std::uint64_t epoch = g_cancel_epoch.load(std::memory_order_acquire);
    // Relaxed: a cache of a fact established by an earlier check; racing writers all store
    // epochs at which the fact held.
    if (validated_epoch_.load(std::memory_order_relaxed) == epoch) [[likely]]
      return false;
    return check_ancestors(epoch);
  }

  // True when this very scope was cancelled (not an ancestor).
  bool cancelled_here() const noexcept { return settled_phase() == kCancelled; }

  // Cancels this scope and every scope below it; from any thread. True if this call did it.
  bool cancel() noexcept;

  // Registers `node` to run once when this scope (or an ancestor) is cancelled. Returns false,
  // without registering, when it already is: the caller then runs the action itself.
  bool add_callback(CancelCallbackNode& node) noexcept;
  // Unregisters `node`; if it is running on another thread, waits until it is done with the
  // node (see marks_own_completion).
  void remove_callback(CancelCallbackNode& node) noexcept;

  // Unlinks this scope from its parent's callback list, for a scope that outlives its use
  // (a TaskGroup child's, kept in its frame while the JoinHandle lives, after the group that
  // is its parent ended). Only once nothing below it can link any more; cancel() on it stays
  // safe from any thread and no longer looks at the parent.
  void leave_parent() noexcept {
    // Acquire pairs with the CAS that installed it (slow()): nothing to unlink without it.
    if (slow_.load(std::memory_order_acquire) != nullptr) [[unlikely]]
      unlink_from_parent();
  }

  CancelState* parent() const noexcept { return parent_; }
  // The earliest deadline in force here. One load, unless a TimeoutScope above may move its
  // deadline: then a walk up to the first scope whose deadline cannot move.
  TimePoint deadline() const noexcept {
    // Relaxed: a deadline is a setting, not a publication; a reader racing a reschedule
    // sees the old or the new one, and the timer, not this value, does the cancelling.
    TimePoint d = deadline_.load(std::memory_order_relaxed);
    if (!deadline_may_move_) [[likely]]
      return d;
    for (const CancelState* s = parent_; s != nullptr; s = s->parent_) {
      const TimePoint up = s->deadline_.load(std::memory_order_relaxed);
      if (up < d) d = up;
      if (!s->deadline_may_move_) break;  // its deadline includes everything above it
    }
    return d;
  }
  // True when a deadline in force here may still move (a TimeoutScope above): a timer of
  // an enclosing deadline cannot stand in for a nested one's.
  bool deadline_may_move() const noexcept { return deadline_may_move_; }

  // A reference-counted state that is cancelled when this scope is (this_task::token()): one
  // per scope, made on first use, released when the scope ends. Returns a new reference.
  SharedCancelState* mirror();

 private:
  struct LinkNode : CancelCallbackNode {
    CancelState* child = nullptr;
  };
  enum : std::uint8_t { kLive, kMarking, kCancelled };
  // The push path's state, allocated on first use.
  struct Slow {
    SpinLock lock;                          // guards the fields below but `mirror`
    CancelCallbackNode* callbacks = nullptr;
    CancelCallbackNode* running = nullptr;  // the callback cancel() is running now
    std::thread::id running_thread;
    bool closed = false;                    // cancel() has taken the list
    LinkNode link;                          // our node in parent_'s list once linked
    // The iterative walks' state, each used by one thread at a time:
    // mark(): the next node of our list to look at, and the scope to go back to. Under our
    // lock.
    CancelCallbackNode* mark_cursor = nullptr;
    CancelState* mark_return = nullptr;
    // run_callbacks(): the scope whose list we were reached from, and its node that led
    // here (our link, or the mirror's node). Under our lock, written once by the closer.
    CancelState* run_return = nullptr;
    CancelCallbackNode* run_via = nullptr;
    // materialize(): the claimed scope one level below us on the chain being linked. Owned
    // by the thread that moved link_state_ to kLinking.
    CancelState* link_below = nullptr;
    // Installed once by mirror() (CAS from null; acq_rel), released with the scope.
    detail::atomic<SharedCancelState*> mirror{nullptr};
  };
  enum : std::uint8_t { kUnlinked, kLinking, kLinked };

  bool check_ancestors(std::uint64_t epoch) const noexcept;
  // cancel()'s two phases: set the flags of this scope, its token mirror and every linked
  // scope below (no user code runs); then run this scope's callbacks, once, on one thread
  // (the first to get here; linked children and the mirror run theirs from their nodes).
  bool mark() noexcept;
  void run_callbacks() noexcept;
  // Makes `s` ours to mark (kLive -> kMarking); false when another canceller has it, after
  // waiting until that one made it visible.
  static bool claim(CancelState* s) noexcept;
  // phase_, once no canceller is marking it (acquire).
  std::uint8_t settled_phase() const noexcept;
  // The scope a node of our list leads to (a linked child, a token mirror), else null.
  static CancelState* child_of(CancelCallbackNode* node) noexcept;
  // add_callback() once the chain is linked: under our lock, unless the list is closed.
  bool add_to_list(CancelCallbackNode& node) noexcept;
  // Links this scope's chain into its ancestors so that their cancel() reaches it. False when
  // an ancestor is already cancelled (this scope is then cancelled too).
  bool materialize() noexcept;
  static void cancel_linked_child(CancelCallbackNode* node) noexcept;
  static void cancel_mirror(CancelCallbackNode* node) noexcept;
  Slow& slow() noexcept;
  void release_slow() noexcept;
  void unlink_from_parent() noexcept;

  // kLive -> kMarking -> kCancelled (see the invariants). The CAS to kMarking picks the one
  // canceller (acq_rel); the release store of kCancelled, after the epoch bump that follows
  // the marking of the whole subtree, pairs with the acquire loads of settled_phase().
  detail::atomic<std::uint8_t> phase_{kLive};
  // A cached result of the pull path: some ancestor is cancelled.
  mutable detail::atomic<bool> ancestor_cancelled_{false};
  // kUnlinked -> kLinking -> kLinked, by the one materialize() that wins the CAS; others
  // wait for kLinked. Acquire/release pair the winner's registration with the waiters.
  detail::atomic<std::uint8_t> link_state_{kUnlinked};
  mutable detail::atomic<std::uint64_t> validated_epoch_;
  CancelState* parent_;  // fixed once the scope is in use
  // The earliest deadline in force here when nothing above may move (fixed once the scope is
  // in use); below a TimeoutScope only this scope's own deadline, and for the TimeoutScope's
  // own scope the deadline that reschedule() moves (relaxed: see deadline()).
  std::atomic<TimePoint> deadline_;
  bool deadline_may_move_ = false;  // fixed once the scope is in use
  detail::atomic<Slow*> slow_{nullptr};

  // What a new scope below `parent` records: the earlier of `own` and the parent's deadline,
  // unless the parent's may move (then only `own`; deadline() walks up).
  static TimePoint inherited_deadline(const CancelState* parent, TimePoint own) noexcept {
    if (parent == nullptr || parent->deadline_may_move_) return own;
    const TimePoint up = parent->deadline_.load(std::memory_order_relaxed);
    return up < own ? up : own;
  }
};

}  // namespace weft::detail

namespace weft::detail {

// A reference-counted CancelState, behind public tokens and sources. Holds a reference on its
// parent so that the parent outlives it (the CancelState member is destroyed, and unlinked
// from the parent, before that reference is dropped).
class SharedCancelState {
 public:
  // A new state with one reference, below `parent` (may be null; gains a reference).
  static SharedCancelState* make(SharedCancelState* parent);
  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept;
  CancelState& state() noexcept { return state_; }

 private:
  explicit SharedCancelState(SharedCancelState* parent);
  ~SharedCancelState() = default;
  friend class CancelState;

  // Relaxed increments (a holder already owns one); acq_rel decrement: the last holder sees
  // every other holder's writes before deleting.
  detail::atomic<int> refs_{1};
  struct ParentRef {
    SharedCancelState* p;
    ~ParentRef() {
      if (p != nullptr) p->release();
    }
  } parent_ref_;
  CancelState state_;
  // When this state mirrors a task scope (this_task::token()): our node in that scope.
  struct MirrorNode : CancelCallbackNode {
    SharedCancelState* owner = nullptr;
  } mirror_link_;
};

}  // namespace weft::detail
