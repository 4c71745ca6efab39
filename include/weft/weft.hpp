// Everything weft offers: #include <weft/weft.hpp>.
#pragma once

#include "weft/cancellation.hpp"
#include "weft/deadline.hpp"
#include "weft/errors.hpp"
#include "weft/event.hpp"
#include "weft/exception_group.hpp"
#include "weft/outcome.hpp"
#include "weft/runtime.hpp"
#include "weft/safe_gather.hpp"
#include "weft/sleep.hpp"
#include "weft/task.hpp"
#include "weft/task_group.hpp"
#include "weft/this_task.hpp"
#include "weft/timeout.hpp"
