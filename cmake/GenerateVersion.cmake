# Writes common/version.hpp with Strata's version (PROJECT_VERSION + git describe). Run at every
# build (a custom target) so reports and plans carry the code they came from; the file is only
# rewritten when the version changes, so nothing recompiles otherwise.
# Inputs: SOURCE_DIR, TEMPLATE, OUT, PROJECT_VERSION.
execute_process(COMMAND git describe --always --dirty --tags
                WORKING_DIRECTORY ${SOURCE_DIR}
                OUTPUT_VARIABLE STRATA_GIT_DESCRIBE OUTPUT_STRIP_TRAILING_WHITESPACE
                ERROR_QUIET)
if(NOT STRATA_GIT_DESCRIBE)
  set(STRATA_GIT_DESCRIBE "unknown")
endif()
set(STRATA_VERSION_STRING "${PROJECT_VERSION}+${STRATA_GIT_DESCRIBE}")
configure_file(${TEMPLATE} ${OUT}.tmp @ONLY)
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUT}.tmp)
