# ctest driver: builds tests/package/consumer against greenreduce and runs it.
#   -DMODE=install       install the build tree to a temporary prefix, then find_package
#   -DMODE=subdirectory  add_subdirectory the source tree
# Other inputs: SOURCE_DIR, BUILD_DIR (the project's build tree), WORK_DIR, VERSION.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
endfunction()

set(consumer_args -S ${SOURCE_DIR}/tests/package/consumer -B ${WORK_DIR}/build
    -DCMAKE_BUILD_TYPE=Release)
if(MODE STREQUAL "install")
  run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix)
  if(NOT EXISTS ${WORK_DIR}/prefix/include/greenreduce/greenreduce.hpp)
    message(FATAL_ERROR "install did not place include/greenreduce/greenreduce.hpp")
  endif()
  # Only the installed prefix may provide greenreduce.
  run(${CMAKE_COMMAND} ${consumer_args} -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix
      -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
elseif(MODE STREQUAL "subdirectory")
  run(${CMAKE_COMMAND} ${consumer_args} -DGREENREDUCE_CONSUME=subdirectory
      -DGREENREDUCE_SOURCE_DIR=${SOURCE_DIR})
  # A subproject must not build the project's tests, benchmarks or examples.
  file(STRINGS ${WORK_DIR}/build/CMakeCache.txt tests_opt REGEX "^GREENREDUCE_BUILD_TESTS:")
  if(NOT tests_opt MATCHES "=OFF$")
    message(FATAL_ERROR "GREENREDUCE_BUILD_TESTS should default OFF in a subproject: ${tests_opt}")
  endif()
else()
  message(FATAL_ERROR "unknown MODE '${MODE}'")
endif()
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer ${VERSION})
message(STATUS "consumer (${MODE}) built and ran against greenreduce ${VERSION}")
