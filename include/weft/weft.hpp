// Everything weft offers: #include <weft/weft.hpp>.
#pragma once

#include "weft/errors.hpp"
#include "weft/runtime.hpp"
#include "weft/safe_gather.hpp"
#include "weft/task.hpp"
