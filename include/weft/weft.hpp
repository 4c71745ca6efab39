// Everything weft offers: #include <weft/weft.hpp>.
#pragma once

#include "weft/as_completed.hpp"
#include "weft/cancellation.hpp"
#include "weft/deadline.hpp"
#include "weft/errors.hpp"
#include "weft/event.hpp"
#include "weft/exception_group.hpp"
#include "weft/outcome.hpp"
#include "weft/runtime.hpp"
#include "weft/safe_gather.hpp"
#include "weft/semaphore.hpp"
#include "weft/task.hpp"
#include "weft/task_group.hpp"
#include "weft/this_task.hpp"
#include "weft/to_thread.hpp"
#include "weft/wait.hpp"
#include "weft/wait_any.hpp"
