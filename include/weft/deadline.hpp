// Deadline: a point on the steady clock by which work must finish.
//
//   auto d = Deadline::after(250ms);
//   if (d.expired()) ...;  d.remaining();  Deadline::never().remaining() == Duration::max()
//
// Saturating: Deadline::after(Duration::max()) or any sum past the clock's range is never();
// one before its start is time_point::min() (expired).
#pragma once

#include <chrono>

namespace weft {

using Duration = std::chrono::steady_clock::duration;

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  // A deadline `d` from now; never() when that is past the clock's range. A zero or negative
  // `d` is already expired.
  template <class Rep, class Period>
  static Deadline after(std::chrono::duration<Rep, Period> d) {
    const Clock::time_point now = Clock::now();
    // The sum is formed in long double (a 64-bit mantissa: exact for every tick count), so
    // that neither `d` nor now + d can overflow before it is compared with the clock's range.
    using Wide = std::chrono::duration<long double, Clock::period>;
    const Wide target = Wide(now.time_since_epoch()) + std::chrono::duration_cast<Wide>(d);
    if (target != target) return never();  // NaN: no meaningful deadline
    if (target >= Wide(Clock::time_point::max().time_since_epoch())) return never();
    if (target <= Wide(Clock::time_point::min().time_since_epoch()))
      return Deadline(Clock::time_point::min());
    return Deadline(now + std::chrono::duration_cast<Duration>(d));
  }
  static Deadline at(Clock::time_point t) { return Deadline(t); }
  static Deadline never() { return Deadline(Clock::time_point::max()); }

  Clock::time_point time() const { return time_; }
  // Time left (zero once expired; Duration::max() for never()).
  Duration remaining() const {
    if (is_never()) return Duration::max();
    const Clock::time_point now = Clock::now();
    return time_ > now ? time_ - now : Duration::zero();
  }
  bool expired() const { return !is_never() && Clock::now() >= time_; }
  bool is_never() const { return time_ == Clock::time_point::max(); }

  friend bool operator==(const Deadline&, const Deadline&) = default;
  friend auto operator<=>(const Deadline&, const Deadline&) = default;

 private:
  explicit Deadline(Clock::time_point t) : time_(t) {}
  Clock::time_point time_;
};

}  // namespace weft
