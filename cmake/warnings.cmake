# SPDX-License-Identifier: Apache-2.0
# The project's warning set. -Werror applies to the project's own targets only.
option(SOFTMIG_WERROR "Treat the project's warnings as errors" ON)
add_library(softmig_warnings INTERFACE)
target_compile_options(softmig_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion
  -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Wformat=2 -Wno-format-truncation -Wundef
  -Werror=return-type -Werror=format-security
  $<$<BOOL:${SOFTMIG_WERROR}>:-Werror>)
