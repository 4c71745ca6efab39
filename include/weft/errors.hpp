// The errors weft delivers.
#pragma once

#include <stdexcept>
#include <string>

namespace weft {

// Delivered into a task whose scope was cancelled, at its next weft suspension point.
// Deliberately not a std::exception: `catch (const std::exception&)` cannot swallow it, the
// reason Python made CancelledError a BaseException. Code that catches it must rethrow it.
struct Cancelled {};

// A deadline expired (see timeout(), GatherOptions::timeout).
class TimeoutError : public std::runtime_error {
 public:
  TimeoutError() : std::runtime_error("weft: deadline exceeded") {}
  explicit TimeoutError(const std::string& what) : std::runtime_error(what) {}
};

// Misuse that would otherwise deadlock or be undefined behaviour: blocking on a runtime from
// one of its own workers, awaiting a task twice, awaiting an empty (moved-from) task, ...
class UsageError : public std::logic_error {
 public:
  explicit UsageError(const std::string& what) : std::logic_error("weft: " + what) {}
};

}  // namespace weft
