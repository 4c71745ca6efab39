// Seams for weft's own tests, to reach failures the system rarely produces on demand. Each acts
// on a cold path only (never on a task's path): a relaxed load where a thread is created.
#pragma once

namespace weft::detail::testing {

// Makes a later Runtime constructor fail to start its worker thread number `started + 1` as
// if the system had refused it (std::system_error with EAGAIN, what pthread_create reports
// when threads run out), after starting `started` of them. Acts once, on the next worker
// thread start in the process.
void fail_worker_thread_start_after(unsigned started) noexcept;

}  // namespace weft::detail::testing
