// InlineVector<T, N>: a vector of at most N elements stored inside the object itself, so that
// a coroutine that fans out to a number of children known only at run time (one per legal
// move, one per shard) keeps them, and their results, in its own frame instead of on the heap.
//
//   weft::InlineVector<weft::Task<long>, 12> children;
//   for (int col = 0; col < 12; ++col)
//     if (legal(board, col)) children.push_back(solve(place(board, col)));
//   long total = 0;
//   for (long n : co_await weft::safe_gather(std::move(children))) total += n;
//
// safe_gather over an InlineVector<Task<T>, N> returns an InlineVector<T, N> (Outcome<T> with
// return_exceptions): the same rules as the std::vector form, and no allocation at all.
//
// Elements are kept in insertion order in [begin(), end()). Adding an element beyond the
// capacity throws UsageError (the vector is left as it was): a wrong capacity is a bug to be
// told about, never a silent overflow. Moving an InlineVector moves its elements one by one
// and leaves the source empty.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "weft/errors.hpp"

namespace weft {

template <class T, std::size_t N>
class InlineVector {
  static_assert(N > 0, "InlineVector needs a capacity of at least one element");
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "InlineVector moves its elements with no way to undo a throw");

 public:
  using value_type = T;
  using size_type = std::size_t;
  using reference = T&;
  using const_reference = const T&;
  using iterator = T*;
  using const_iterator = const T*;

  // User-provided, so that even `InlineVector v{}` leaves the storage unwritten.
  InlineVector() noexcept {}
  InlineVector(std::initializer_list<T> init)
    requires std::is_copy_constructible_v<T>
  {
    copy_in(init);
  }
  InlineVector(InlineVector&& other) noexcept { take_from(other); }
  InlineVector(const InlineVector& other)
    requires std::is_copy_constructible_v<T>
  {
    copy_in(other);
  }
  InlineVector& operator=(InlineVector&& other) noexcept {
    if (this != &other) {
      clear();
      take_from(other);
    }
    return *this;
  }
  InlineVector& operator=(const InlineVector& other)
    requires std::is_copy_constructible_v<T>
  {
    if (this != &other) {
      clear();
      copy_in(other);
    }
    return *this;
  }
  ~InlineVector() { clear(); }

  static constexpr size_type capacity() noexcept { return N; }
  size_type size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  bool full() const noexcept { return size_ == N; }

  // Throws UsageError when `n` exceeds the capacity; otherwise does nothing (the storage is
  // already there). Lets code written for std::vector keep its reserve().
  void reserve(size_type n) const {
    if (n > N) throw UsageError("InlineVector::reserve: more than the capacity");
  }

  template <class... Args>
  T& emplace_back(Args&&... args) {
    if (size_ == N) throw UsageError("InlineVector: push beyond the capacity");
    T* slot = std::construct_at(data() + size_, std::forward<Args>(args)...);
    ++size_;
    return *slot;
  }
  void push_back(T&& v) { emplace_back(std::move(v)); }
  void push_back(const T& v) { emplace_back(v); }
  void pop_back() noexcept {
    --size_;
    std::destroy_at(data() + size_);
  }
  void clear() noexcept {
    std::destroy(begin(), end());
    size_ = 0;
  }

  T* data() noexcept { return std::launder(reinterpret_cast<T*>(storage_)); }
  const T* data() const noexcept { return std::launder(reinterpret_cast<const T*>(storage_)); }
  T& operator[](size_type i) noexcept { return data()[i]; }
  const T& operator[](size_type i) const noexcept { return data()[i]; }
  T& front() noexcept { return data()[0]; }
  T& back() noexcept { return data()[size_ - 1]; }
  iterator begin() noexcept { return data(); }
  iterator end() noexcept { return data() + size_; }
  const_iterator begin() const noexcept { return data(); }
  const_iterator end() const noexcept { return data() + size_; }

 private:
  // A constructor that throws half-way never runs the destructor: the copies made so far
  // are destroyed here.
  template <class Range>
  void copy_in(const Range& from) {
    if (from.size() > N) throw UsageError("InlineVector: more elements than the capacity");
    try {
      for (const T& v : from) emplace_back(v);
    } catch (...) {
      clear();
      throw;
    }
  }
  void take_from(InlineVector& other) noexcept {
    std::uninitialized_move(other.begin(), other.end(), data());
    size_ = other.size_;
    other.clear();
  }

  alignas(T) std::byte storage_[N * sizeof(T)];
  std::uint32_t size_ = 0;
};

}  // namespace weft
