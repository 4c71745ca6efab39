// ExceptionGroup: several exceptions that escaped together (from a gather, a task group, ...).
//
//   try {
//     co_await gather(a(), b(), c());
//   } catch (const weft::ExceptionGroup& eg) {
//     auto [timeouts, rest] = eg.split<weft::TimeoutError>();
//     if (rest) throw *rest;          // re-raise everything that is not a timeout
//   }
//
// The members are held as std::exception_ptr and may be of any type: std::exceptions,
// weft::Cancelled (not a std::exception), other ExceptionGroups (nested groups), or anything
// else that was thrown. An ExceptionGroup is immutable; copies share its members and message
// and copying never throws, so it is safe to throw, copy and rethrow.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "weft/errors.hpp"

namespace weft {

class ExceptionGroup : public std::exception {
 public:
  // Holds `exceptions`, in order. Every member must be non-null, else throws UsageError.
  // An empty group is allowed (it is what split() would never return, but library code may
  // build one): it contains nothing, splits into (nullopt, nullopt), and its what() is
  // "weft: 0 exceptions". The message returned by what() is built here, once.
  //
  //   ExceptionGroup eg({std::make_exception_ptr(std::runtime_error("disk full")),
  //                      std::make_exception_ptr(weft::Cancelled{})});
  explicit ExceptionGroup(std::vector<std::exception_ptr> exceptions)
      : data_(std::make_shared<const Data>(make_data(std::move(exceptions)))) {}

  // Copies share the members and the message; neither copying nor assignment throws, and
  // there is no moved-from state (a "move" is a copy).
  ExceptionGroup(const ExceptionGroup&) noexcept = default;
  ExceptionGroup& operator=(const ExceptionGroup&) noexcept = default;
  ~ExceptionGroup() override = default;

  // The members, in the order given to the constructor. Nested groups appear as single
  // members (an exception_ptr to an ExceptionGroup); they are not flattened.
  //
  //   for (const std::exception_ptr& e : eg.exceptions()) log(e);
  //   eg.exceptions().size();   // 2
  const std::vector<std::exception_ptr>& exceptions() const noexcept { return data_->exceptions; }

  // "weft: N exceptions: M1; M2; ..." ("1 exception" for one, "weft: 0 exceptions" for none),
  // where each Mi is the member's what() if it is a std::exception, "Cancelled" for
  // weft::Cancelled, "(<what() of the nested group>)" for a nested ExceptionGroup, and
  // "non-standard exception" otherwise. Built once, by the constructor.
  //
  //   eg.what();   // "weft: 2 exceptions: disk full; Cancelled"
  const char* what() const noexcept override { return data_->message.c_str(); }

  // True when some member is an E: a member of type E or of a type derived from E (the test
  // is `catch (const E&)`). Nested groups are transparent, as with Python's except*: a member
  // that is an ExceptionGroup counts when it (recursively) contains an E, and is never itself
  // tested against E. So contains<std::exception>() asks whether some leaf is a
  // std::exception; a group holding only Cancelled does not. E may not be ExceptionGroup or a
  // type derived from it (Python forbids `except* ExceptionGroup` for the same reason).
  //
  //   // eg = {runtime_error("x"), {TimeoutError(), Cancelled{}}}
  //   eg.contains<weft::TimeoutError>();   // true  (in the nested group)
  //   eg.contains<std::exception>();       // true  (runtime_error, TimeoutError)
  //   eg.contains<weft::Cancelled>();      // true
  //   eg.contains<std::logic_error>();     // false
  template <class E>
  bool contains() const {
    check_matchable<E>();
    for (const std::exception_ptr& e : exceptions()) {
      try {
        std::rethrow_exception(e);
      } catch (const ExceptionGroup& nested) {
        if (nested.contains<E>()) return true;
      } catch (const E&) {
        return true;
      } catch (...) {
      }
    }
    return false;
  }

  // Splits the group in two, as Python's BaseExceptionGroup.split(E): (a group of the members
  // that are E, a group of the rest), where "is E" is the test contains() uses. Either side is
  // nullopt when it would be empty, so an empty group splits into (nullopt, nullopt). Members
  // keep their relative order. Nested groups are split recursively and keep their structure:
  // a nested group whose leaves all match (or none match) goes to that side as it is (the
  // same exception_ptr); a mixed one contributes a new nested group to each side; one with no
  // leaves at all is dropped. When every member goes to one side, that side is a copy of
  // *this (sharing its members). The result groups build their own what() messages.
  //
  //   // eg = {runtime_error("a"), Cancelled{}, {TimeoutError(), Cancelled{}}}
  //   auto [cancelled, rest] = eg.split<weft::Cancelled>();
  //   // cancelled = {Cancelled{}, {Cancelled{}}}
  //   // rest      = {runtime_error("a"), {TimeoutError()}}
  //   if (rest) throw *rest;
  template <class E>
  std::pair<std::optional<ExceptionGroup>, std::optional<ExceptionGroup>> split() const {
    check_matchable<E>();
    std::vector<std::exception_ptr> matching;
    std::vector<std::exception_ptr> rest;
    for (const std::exception_ptr& e : exceptions()) {
      try {
        std::rethrow_exception(e);
      } catch (const ExceptionGroup& nested) {
        auto [nested_matching, nested_rest] = nested.split<E>();
        if (!nested_matching && !nested_rest) continue;  // no leaves: dropped
        if (!nested_rest) {
          matching.push_back(e);
        } else if (!nested_matching) {
          rest.push_back(e);
        } else {
          matching.push_back(std::make_exception_ptr(*nested_matching));
          rest.push_back(std::make_exception_ptr(*nested_rest));
        }
      } catch (const E&) {
        matching.push_back(e);
      } catch (...) {
        rest.push_back(e);
      }
    }
    auto side = [&](std::vector<std::exception_ptr>& members) -> std::optional<ExceptionGroup> {
      if (members.empty()) return std::nullopt;
      // Unchanged (every member went to this side, none of them rebuilt): share *this.
      if (members == exceptions()) return *this;
      return ExceptionGroup(std::move(members));
    };
    return {side(matching), side(rest)};
  }

 private:
  struct Data {
    std::vector<std::exception_ptr> exceptions;
    std::string message;
  };

  template <class E>
  static constexpr void check_matchable() {
    static_assert(!std::is_reference_v<E>, "ExceptionGroup: name the type, not a reference");
    static_assert(!std::is_base_of_v<ExceptionGroup, std::remove_cv_t<E>>,
                  "ExceptionGroup: nested groups are transparent; match the types they hold");
  }

  static std::string describe(const std::exception_ptr& e) {
    try {
      std::rethrow_exception(e);
    } catch (const ExceptionGroup& nested) {
      return std::string("(") + nested.what() + ")";
    } catch (const std::exception& ex) {
      return ex.what();
    } catch (const Cancelled&) {
      return "Cancelled";
    } catch (...) {
      return "non-standard exception";
    }
  }

  static Data make_data(std::vector<std::exception_ptr> exceptions) {
    for (const std::exception_ptr& e : exceptions) {
      if (!e) throw UsageError("ExceptionGroup: a member is a null exception_ptr");
    }
    std::string message = "weft: " + std::to_string(exceptions.size()) +
                          (exceptions.size() == 1 ? " exception" : " exceptions");
    for (std::size_t i = 0; i < exceptions.size(); ++i) {
      message += i == 0 ? ": " : "; ";
      message += describe(exceptions[i]);
    }
    return Data{std::move(exceptions), std::move(message)};
  }

  std::shared_ptr<const Data> data_;
};

}  // namespace weft
