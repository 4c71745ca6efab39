// Out-of-line support for Task: the cold paths of the inline code in task.hpp.
#include <cxxabi.h>
#include <dlfcn.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <typeinfo>

#include "weft/task.hpp"

namespace weft {
namespace {

void print_swallowed(std::string_view task) {
#ifdef NDEBUG
  (void)task;  // release builds stay quiet unless the user installs a handler
#else
  std::fprintf(stderr, "weft: task %.*s was cancelled, received Cancelled and returned normally "
               "(catch Cancelled only to clean up, then rethrow it)\n",
               static_cast<int>(task.size()), task.data());
#endif
}

// Relaxed: the handler is a plain function pointer; installing one publishes nothing else.
std::atomic<SwallowedCancellationHandler> g_swallowed_handler{&print_swallowed};

}  // namespace

void set_swallowed_cancellation_handler(SwallowedCancellationHandler handler) noexcept {
  g_swallowed_handler.store(handler != nullptr ? handler : &print_swallowed,
                            std::memory_order_relaxed);
}

namespace detail {

void throw_not_fresh(bool empty, const char* what) {
  throw UsageError(std::string(what) + (empty ? ": the Task is empty (moved from?)"
                                              : ": the Task was already started"));
}

bool is_cancelled_exception(const std::exception_ptr& e) noexcept {
  if (!e) return false;
#if defined(__GLIBCXX__)
  // The held object's exact type: no rethrow. Anything else may still derive from
  // Cancelled: the catch below decides.
  if (const std::type_info* type = e.__cxa_exception_type(); type != nullptr &&
                                                              *type == typeid(Cancelled))
    return true;
#endif
  try {
    std::rethrow_exception(e);
  } catch (const Cancelled&) {
    return true;
  } catch (...) {
    return false;
  }
}

void report_swallowed_cancellation(PromiseBase& promise) noexcept {
  // A coroutine frame starts with its resume function's address: name the task after it.
  const auto frame = std::coroutine_handle<PromiseBase>::from_promise(promise).address();
  void* resume_fn = *static_cast<void* const*>(frame);
  std::string description;
  Dl_info info{};
  if (dladdr(resume_fn, &info) != 0 && info.dli_sname != nullptr) {
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> demangled(
        abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status), &std::free);
    description = status == 0 ? demangled.get() : info.dli_sname;
  } else {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "coroutine at %p (resume function %p)", frame, resume_fn);
    description = buffer;
  }
  try {
    g_swallowed_handler.load(std::memory_order_relaxed)(description);
  } catch (...) {
    // A reporting hook must not turn a diagnostic into a crash.
  }
}

}  // namespace detail
}  // namespace weft
