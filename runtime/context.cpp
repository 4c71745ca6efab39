// Freeing and copying task-local bindings (include/weft/detail/context.hpp has the protocol).
#include <vector>

#include "weft/detail/context.hpp"

namespace weft::detail {

void release_owned_context(ContextNode* head) noexcept {
  while (head != nullptr) {
    ContextNode* next = head->next;
    const bool last = head->bottom;
    head->destroy(head);
    if (last) return;  // below it: inherited nodes, not ours
    head = next;
  }
}

ContextNode* clone_visible_context(const ContextNode* head) {
  ContextNode* first = nullptr;
  ContextNode** tail = &first;
  std::vector<const void*> seen;
  try {
    for (const ContextNode* n = head; n != nullptr; n = n->next) {
      bool shadowed = false;
      for (const void* k : seen) shadowed = shadowed || k == n->key;
      if (shadowed || n->clone == nullptr) continue;
      seen.push_back(n->key);
      ContextNode* copy = n->clone(n);
      copy->next = nullptr;
      copy->bottom = false;
      *tail = copy;
      tail = &copy->next;
    }
  } catch (...) {
    if (first != nullptr) {
      ContextNode* last = first;
      while (last->next != nullptr) last = last->next;
      last->bottom = true;
      release_owned_context(first);
    }
    throw;
  }
  if (first != nullptr) {
    ContextNode* last = first;
    while (last->next != nullptr) last = last->next;
    last->bottom = true;  // the whole list is the call's own
  }
  return first;
}

}  // namespace weft::detail
