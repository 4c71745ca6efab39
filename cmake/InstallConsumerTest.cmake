# ctest -P script: installs this build into a scratch prefix, then configures, builds and runs
# tests/install_consumer against it with find_package(weft CONFIG REQUIRED).
# Inputs: WEFT_SOURCE_DIR, WEFT_BINARY_DIR, CXX_COMPILER, CXX_FLAGS, LINKER_FLAGS, BUILD_TYPE.
set(prefix "${WEFT_BINARY_DIR}/install-consumer/prefix")
set(build "${WEFT_BINARY_DIR}/install-consumer/build")
file(REMOVE_RECURSE "${prefix}" "${build}")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}")
  endif()
endfunction()

run(${CMAKE_COMMAND} --install "${WEFT_BINARY_DIR}" --prefix "${prefix}")
run(${CMAKE_COMMAND} -S "${WEFT_SOURCE_DIR}/tests/install_consumer" -B "${build}" -G Ninja
    "-DCMAKE_PREFIX_PATH=${prefix}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
    "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${LINKER_FLAGS}"
    "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
run(${CMAKE_COMMAND} --build "${build}")
run("${build}/consumer")
