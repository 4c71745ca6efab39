#!/bin/sh
echo "weft: coverage tools are stubbed out in this offline Bazel setup; use the CMake build for coverage" >&2
exit 1
