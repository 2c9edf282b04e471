# The dependency rules of DESIGN.md ("Folders and what each may depend on"), made to fail the build.
#
# Project headers are included from the project root ("strategies/plan.hpp"). No target gets the
# project root as an include directory; each gets an *include view* instead: a folder of the
# build tree holding one symlink per project folder the target may include, so an include of
# any other folder fails to compile ("sim/simulate.hpp: No such file or directory"). Views are
# PUBLIC: a consumer sees the folders of the libraries it links, which the rules let it use
# transitively; strata_check_include_views() verifies that at configure time.
#
#   folder        may include (its view)                          system headers (besides std, JSON)
#   common        common                                          -
#   strategies    common strategies                               -
#   profiler      common strategies profiler                      -
#   profiler/tools common strategies profiler kernels executor    - (the measuring tools)
#   results       common strategies results                       -
#   sim           common strategies profiler results sim          SimGrid
#   search        common strategies profiler results search       -
#   kernels       kernels                                         Eigen, CUDA
#   executor      common strategies kernels executor              MPI, CUDA (NCCL, DESIGN.md)
#   cli, bench,   every folder (tests also tests/)                all (only cli/ is checked, for
#   tests                                                         "../" includes)
#   cli's library strata_cli_specs: common strategies profiler cli
#   python        common strategies profiler cli                  - (pybind11 and Python's are
#                                                                   no family)
#
# SimGrid's headers live in /usr/include and the CUDA runtime's may be in /usr/local/include,
# which the compiler searches for every target: a view cannot hide them. Those families, and the
# others for good measure, are checked at build time instead by strata_include_rules(), which
# also rejects "../" includes (they would reach around a view). Both checks are token checks
# (strata_forbid_tokens): a custom target in ALL runs cmake/StrataForbidTokens.cmake over the
# folder and fails the build naming file, line and token.
#
# tests/build/ proves both mechanisms with ctest tests (label unit).

set(STRATA_INCLUDE_VIEWS_DIR ${CMAKE_BINARY_DIR}/include-views)
# What cli/, bench/ and tests/ may include: every library folder.
set(STRATA_ALL_FOLDERS common strategies profiler results sim search kernels executor cli)
set(STRATA_BUILD_RULES_DIR ${CMAKE_BINARY_DIR}/build-rules)
set(STRATA_FORBID_TOKENS_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/StrataForbidTokens.cmake)

# strata_include_view(<target> <folder>...)
# Makes ${STRATA_INCLUDE_VIEWS_DIR}/<target>/<folder> -> ${PROJECT_SOURCE_DIR}/<folder> for each
# folder and adds that directory to <target>'s PUBLIC include directories. Every folder must
# exist: a typo would otherwise only show as a missing header later.
function(strata_include_view target)
  if(NOT TARGET ${target})
    message(FATAL_ERROR "strata_include_view: no target ${target}")
  endif()
  if(NOT ARGN)
    message(FATAL_ERROR "strata_include_view(${target}): no folder given")
  endif()
  set(view ${STRATA_INCLUDE_VIEWS_DIR}/${target})
  # Rebuilt at every configure, so a folder removed from the list disappears from the view.
  file(REMOVE_RECURSE ${view})
  file(MAKE_DIRECTORY ${view})
  foreach(folder IN LISTS ARGN)
    if(NOT IS_DIRECTORY ${PROJECT_SOURCE_DIR}/${folder})
      message(FATAL_ERROR "strata_include_view(${target}): no folder ${PROJECT_SOURCE_DIR}/${folder}")
    endif()
    file(CREATE_LINK ${PROJECT_SOURCE_DIR}/${folder} ${view}/${folder} SYMBOLIC)
  endforeach()
  target_include_directories(${target} PUBLIC ${view})
  set_property(TARGET ${target} PROPERTY STRATA_INCLUDE_VIEW ${ARGN})
  set_property(GLOBAL APPEND PROPERTY STRATA_INCLUDE_VIEW_TARGETS ${target})
endfunction()

# strata_check_include_views(): called once every target exists (end of the top-level
# CMakeLists.txt). A library's view is PUBLIC, so linking it widens the consumer's view; this
# makes sure no target links a library that may include a folder the target may not, e.g.
# strata_executor linking strata_sim would let executor/ include sim/.
function(strata_check_include_views)
  get_property(targets GLOBAL PROPERTY STRATA_INCLUDE_VIEW_TARGETS)
  foreach(target IN LISTS targets)
    get_target_property(view ${target} STRATA_INCLUDE_VIEW)
    get_target_property(links ${target} LINK_LIBRARIES)
    if(NOT links)
      continue()
    endif()
    foreach(lib IN LISTS links)
      # Entries added from another directory come wrapped as ::@(dir);name;::@.
      if(NOT TARGET "${lib}")
        continue()
      endif()
      get_target_property(lib_view ${lib} STRATA_INCLUDE_VIEW)
      if(NOT lib_view)
        continue()
      endif()
      foreach(folder IN LISTS lib_view)
        if(NOT folder IN_LIST view)
          list(JOIN view " " shown)
          message(FATAL_ERROR
            "${target} links ${lib}, whose include view has ${folder}/, which ${target} may not "
            "include (its view: ${shown}; DESIGN.md \"Folders and what each may depend on\").")
        endif()
      endforeach()
    endforeach()
  endforeach()
endfunction()

# strata_forbid_tokens(NAME <name> DIR <folder> TOKENS <regex>... MESSAGE <text>
#                      [TARGETS <target>...] [NO_BUILD_CHECK])
# Fails the build when a source file (.c .cc .cpp .h .hpp .cu .cuh .inl .in) under
# ${PROJECT_SOURCE_DIR}/<folder> matches one of the CMake regular expressions <regex>, printing
# "file:line: ..." for every match, then <text>. The rule is written to
# ${STRATA_BUILD_RULES_DIR}/<name>.cmake and checked by the custom target strata_rule_<name>, part
# of ALL; TARGETS also depend on it, so building one of them alone runs the check. NO_BUILD_CHECK
# writes the rule file only (for tests, and for rules not yet enabled). A regex may not contain a
# semicolon (CMake lists).
function(strata_forbid_tokens)
  # MESSAGE takes several values so that a semicolon in the text (a list separator) survives.
  cmake_parse_arguments(ARG "NO_BUILD_CHECK" "NAME;DIR" "TOKENS;TARGETS;MESSAGE" ${ARGN})
  if(NOT ARG_NAME OR NOT ARG_DIR OR NOT ARG_TOKENS OR NOT ARG_MESSAGE)
    message(FATAL_ERROR "strata_forbid_tokens: NAME, DIR, TOKENS and MESSAGE are required")
  endif()
  list(JOIN ARG_MESSAGE ";" ARG_MESSAGE)
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "strata_forbid_tokens(${ARG_NAME}): unknown arguments ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  set(dir ${PROJECT_SOURCE_DIR}/${ARG_DIR})
  if(NOT IS_DIRECTORY ${dir})
    message(FATAL_ERROR "strata_forbid_tokens(${ARG_NAME}): no folder ${dir}")
  endif()
  # Bracket arguments keep each regex byte for byte (backslashes, quotes, tabs).
  set(rule "# Generated by strata_forbid_tokens() (cmake/StrataBuildRules.cmake).\n")
  string(APPEND rule "set(RULE_NAME [==[${ARG_NAME}]==])\n")
  string(APPEND rule "set(RULE_DIR [==[${dir}]==])\n")
  string(APPEND rule "set(RULE_MESSAGE [==[${ARG_MESSAGE}]==])\n")
  list(LENGTH ARG_TOKENS count)
  string(APPEND rule "set(RULE_TOKEN_COUNT ${count})\n")
  set(i 0)
  foreach(token IN LISTS ARG_TOKENS)
    string(APPEND rule "set(RULE_TOKEN_${i} [==[${token}]==])\n")
    math(EXPR i "${i} + 1")
  endforeach()
  set(rule_file ${STRATA_BUILD_RULES_DIR}/${ARG_NAME}.cmake)
  file(CONFIGURE OUTPUT ${rule_file} CONTENT "${rule}")
  if(ARG_NO_BUILD_CHECK)
    return()
  endif()
  add_custom_target(strata_rule_${ARG_NAME} ALL
    COMMAND ${CMAKE_COMMAND} -DRULE=${rule_file} -P ${STRATA_FORBID_TOKENS_SCRIPT}
    COMMENT "Build rule ${ARG_NAME}: no forbidden token in ${ARG_DIR}/"
    VERBATIM)
  foreach(target IN LISTS ARG_TARGETS)
    add_dependencies(${target} strata_rule_${ARG_NAME})
  endforeach()
endfunction()

# The system-header families that strata_include_rules() knows, as include-line regexes. The
# tab in "[ \t]" is a real tab (quoted argument), which CMake's regex engine needs.
set(_strata_include "#[ \t]*include[ \t]*")
set(STRATA_HEADERS_simgrid "${_strata_include}[<\"](simgrid|xbt|smpi)[/.]")
set(STRATA_HEADERS_mpi "${_strata_include}[<\"]([^\">]*/)?mpi[^\">/]*[.]h[\">]")
set(STRATA_HEADERS_cuda
    "${_strata_include}[<\"](cuda|cublas|cudnn|curand|cufft|cusparse|nccl|nvml|nvtx|thrust/|cub/)")
set(STRATA_HEADERS_qt "${_strata_include}<(Q[A-Za-z]|qt)")
set(STRATA_HEADERS_eigen "${_strata_include}<(Eigen|unsupported/Eigen|eigen3)/")
set(STRATA_HEADER_FAMILIES simgrid mpi cuda qt eigen)
set(STRATA_PARENT_INCLUDE "${_strata_include}[<\"][^\">]*[.][.]/")

# strata_include_rules(<target> [SYSTEM <family>...])
# The include hygiene of the folder that defines <target> (the current source directory), checked
# at every build: no "../" include, and no header of a family in STRATA_HEADER_FAMILIES that is
# not listed after SYSTEM. Rules are named <folder>_parent_includes and <folder>_system_headers
# ("/" in a nested folder becomes "_").
function(strata_include_rules target)
  cmake_parse_arguments(ARG "" "" "SYSTEM" ${ARGN})
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "strata_include_rules(${target}): unknown arguments ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  file(RELATIVE_PATH folder ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  # A nested folder (profiler/tools) names its rules profiler_tools_...: no "/" in a target name.
  string(REPLACE "/" "_" rule ${folder})
  strata_forbid_tokens(NAME ${rule}_parent_includes DIR ${folder} TARGETS ${target}
    TOKENS "${STRATA_PARENT_INCLUDE}"
    MESSAGE "include project headers from the project root (\"strategies/plan.hpp\"), never \
with \"../\": a relative path reaches around the include view of ${target} \
(cmake/StrataBuildRules.cmake).")
  set(tokens "")
  set(forbidden "")
  foreach(family IN LISTS ARG_SYSTEM)
    if(NOT family IN_LIST STRATA_HEADER_FAMILIES)
      message(FATAL_ERROR "strata_include_rules(${target}): unknown family ${family} "
                          "(known: ${STRATA_HEADER_FAMILIES})")
    endif()
  endforeach()
  foreach(family IN LISTS STRATA_HEADER_FAMILIES)
    if(NOT family IN_LIST ARG_SYSTEM)
      list(APPEND tokens "${STRATA_HEADERS_${family}}")
      list(APPEND forbidden ${family})
    endif()
  endforeach()
  if(NOT tokens)
    return()
  endif()
  list(JOIN forbidden ", " forbidden)
  strata_forbid_tokens(NAME ${rule}_system_headers DIR ${folder} TARGETS ${target}
    TOKENS ${tokens}
    MESSAGE "${folder}/ may not include ${forbidden} headers (DESIGN.md \"Folders and what each \
may depend on\", cmake/StrataBuildRules.cmake).")
endfunction()
