// Task-local context (ContextVar, context_var.hpp): the bindings a task sees, how children
// inherit them, and who frees them.
//
// Protocol:
//   A task's bindings are a singly linked list of nodes, newest first (PromiseBase::context).
//   A child starts with its parent's head: it sees every binding the parent had when it
//   started, and shares those nodes without copying or counting them. ContextVar::set() in a
//   task pushes a node of its own on top of its own head; nobody else ever sees that node
//   unless it is started by this task later. A task frees the nodes it pushed when it ends
//   (its promise's destructor); the first node it pushed is marked `bottom`, so that freeing
//   stops there without touching the inherited nodes below (which may already be gone: a
//   JoinHandle can keep a child's frame past its parent's end).
//   A blocking call (to_thread) may outlive its awaiting task's wait (a cancellation resumes
//   the task while the call runs), so it does not share nodes: it gets copies of the visible
//   bindings, owned by the call.
// Invariants:
//   - Structured concurrency keeps every shared node alive while anyone can read it: a task
//     reads its bindings only while it runs, and a child runs only while its parent (the
//     owner of the nodes it inherited) has not ended.
//   - Nodes are immutable once pushed; a task's head is written only by the task itself
//     (or, before it starts, by its starter), so no node access needs synchronisation.
#pragma once

#include <cstdint>

namespace weft::detail {

struct ContextNode {
  const void* key = nullptr;        // the ContextVar this node binds
  ContextNode* next = nullptr;      // older bindings (the owner's, then inherited ones)
  bool bottom = false;              // the first node its owner pushed
  void (*destroy)(ContextNode* self) noexcept = nullptr;
  // A copy of the node (a fresh bottom-less node), or null when its value cannot be copied.
  ContextNode* (*clone)(const ContextNode* self) = nullptr;
};

// A task's bindings: the head of its list and whether the head is its own node.
struct ContextSlot {
  ContextNode** head;
  bool* owns;
};

// Frees the nodes an owner pushed, from `head` down to its bottom node.
void release_owned_context(ContextNode* head) noexcept;

// The first binding of every key visible from `head`, copied into a list owned by the caller
// (values that cannot be copied are left out); null when `head` is. For to_thread.
ContextNode* clone_visible_context(const ContextNode* head);

// Set on a blocking-pool thread while it runs a to_thread call: the call's own bindings.
inline thread_local ContextSlot* tl_context_override = nullptr;

}  // namespace weft::detail
