# Checks one rule written by strata_forbid_tokens() (cmake/StrataBuildRules.cmake): fails, naming
# file, line and token, when a source file under the rule's folder matches one of its regexes.
# Usage: cmake -DRULE=<build-rules/name.cmake> [-DDIR=<folder to check instead>] -P <this file>
# DIR lets tests run a real rule over a fixture folder (tests/build/).
cmake_minimum_required(VERSION 3.24)

if(NOT RULE OR NOT EXISTS "${RULE}")
  message(FATAL_ERROR "StrataForbidTokens: RULE=${RULE} is not a rule file")
endif()
include("${RULE}")
if(DIR)
  set(RULE_DIR "${DIR}")
endif()
if(NOT IS_DIRECTORY "${RULE_DIR}")
  message(FATAL_ERROR "StrataForbidTokens: rule ${RULE_NAME}: no folder ${RULE_DIR}")
endif()

# A glob on purpose: a file added to the folder is checked without anyone listing it.
file(GLOB_RECURSE files LIST_DIRECTORIES false
  "${RULE_DIR}/*.c" "${RULE_DIR}/*.cc" "${RULE_DIR}/*.cpp" "${RULE_DIR}/*.h" "${RULE_DIR}/*.hpp"
  "${RULE_DIR}/*.cu" "${RULE_DIR}/*.cuh" "${RULE_DIR}/*.inl" "${RULE_DIR}/*.in")
list(SORT files)

set(found 0)
math(EXPR last "${RULE_TOKEN_COUNT} - 1")
foreach(file IN LISTS files)
  file(READ "${file}" content)
  foreach(i RANGE ${last})
    set(token "${RULE_TOKEN_${i}}")
    # Every match, not only the first: the rest of the file is searched again after each one.
    set(rest "${content}")
    set(offset 0)
    while(rest MATCHES "${token}")
      set(match "${CMAKE_MATCH_0}")
      string(LENGTH "${match}" match_length)
      if(match_length EQUAL 0)
        break()  # a regex that matches the empty string would loop forever
      endif()
      # The leftmost regex match is also the leftmost occurrence of its text (no anchors).
      string(FIND "${rest}" "${match}" pos)
      math(EXPR at "${offset} + ${pos}")
      string(SUBSTRING "${content}" 0 ${at} before)
      string(REGEX MATCHALL "\n" newlines "${before}")
      list(LENGTH newlines line)
      math(EXPR line "${line} + 1")
      # The whole line, for the message.
      string(FIND "${before}" "\n" line_start REVERSE)
      math(EXPR line_start "${line_start} + 1")
      string(SUBSTRING "${content}" ${line_start} -1 text)
      string(FIND "${text}" "\n" line_end)
      string(SUBSTRING "${text}" 0 ${line_end} text)
      string(STRIP "${text}" text)
      string(REPLACE "\t" "\\t" shown "${token}")
      message("${file}:${line}: forbidden by rule ${RULE_NAME} (regex '${shown}'): ${text}")
      math(EXPR found "${found} + 1")
      math(EXPR skip "${pos} + ${match_length}")
      string(SUBSTRING "${rest}" ${skip} -1 rest)
      math(EXPR offset "${offset} + ${skip}")
    endwhile()
  endforeach()
endforeach()

if(found GREATER 0)
  # A plain message keeps the summary on one line (FATAL_ERROR text is wrapped).
  message("${found} forbidden token(s) in ${RULE_DIR}: ${RULE_MESSAGE}")
  message(FATAL_ERROR "Build rule ${RULE_NAME} failed (cmake/StrataBuildRules.cmake)")
endif()
