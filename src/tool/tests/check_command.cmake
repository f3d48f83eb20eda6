# SPDX-License-Identifier: Apache-2.0
# Runs a command and checks its exit status and output (stdout and stderr together).
#   cmake -DEXPECT_EXIT=<code> [-DEXPECT_OUTPUT=<regex>;<regex>...] -P check_command.cmake -- CMD [ARGS...]
# Every regex must match (ctest's PASS_REGULAR_EXPRESSION needs only one of several to match,
# and cannot check an exit status at the same time).
set(cmd)
set(seen_separator FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE ${last})
  if(seen_separator)
    list(APPEND cmd "${CMAKE_ARGV${i}}")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(seen_separator TRUE)
  endif()
endforeach()
if(NOT cmd)
  message(FATAL_ERROR "check_command.cmake: no command after --")
endif()

execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
string(REPLACE ";" " " shown "${cmd}")
message(STATUS "command: ${shown}\nexit: ${rc}\noutput:\n${out}")
if(NOT rc STREQUAL "${EXPECT_EXIT}")
  message(FATAL_ERROR "expected exit status ${EXPECT_EXIT}, got ${rc}")
endif()
foreach(re IN LISTS EXPECT_OUTPUT)
  if(NOT out MATCHES "${re}")
    message(FATAL_ERROR "output does not match: ${re}")
  endif()
endforeach()
