# Runs the command given after "--" and succeeds only if it fails (non-zero exit status) and its
# output (stdout and stderr) matches every regex EXPECT1, EXPECT2, ... so that a test expecting a
# failure cannot pass because of some unrelated failure.
# Usage: cmake -DEXPECT1=<regex> [-DEXPECT2=<regex> ...] -P expect_failure.cmake -- <command>...
cmake_minimum_required(VERSION 3.24)

set(command "")
set(in_command FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE ${last})
  if(in_command)
    list(APPEND command "${CMAKE_ARGV${i}}")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(in_command TRUE)
  endif()
endforeach()
if(NOT command OR NOT DEFINED EXPECT1)
  message(FATAL_ERROR "usage: cmake -DEXPECT1=<regex> ... -P expect_failure.cmake -- <command>")
endif()

execute_process(COMMAND ${command} RESULT_VARIABLE status OUTPUT_VARIABLE output
                ERROR_VARIABLE output)
if(status EQUAL 0)
  message(FATAL_ERROR "expected a failure, but the command succeeded:\n${output}")
endif()
foreach(i RANGE 1 9)
  if(NOT DEFINED EXPECT${i})
    break()
  endif()
  if(NOT output MATCHES "${EXPECT${i}}")
    message(FATAL_ERROR "the command failed (${status}), but its output lacks '${EXPECT${i}}' "
                        "(so it may have failed for another reason):\n${output}")
  endif()
  message(STATUS "failed as expected: ${CMAKE_MATCH_0}")
endforeach()
