# SPDX-License-Identifier: Apache-2.0
# Sanitizers apply to code that is not injected into users' programs: the core and platform
# libraries as linked into unit tests, and the tests themselves. The preloaded library is never
# sanitized (a sanitizer runtime cannot be preloaded into arbitrary programs).
add_library(softmig_sanitizers INTERFACE)
if(SOFTMIG_SANITIZER)
  string(REPLACE ";" "," _san "${SOFTMIG_SANITIZER}")
  # The core and platform are built without RTTI (as the preloaded library is): UBSan's vptr
  # check would need it.
  set(_extra "")
  if(_san MATCHES "undefined")
    set(_extra -fno-sanitize=vptr)
  endif()
  target_compile_options(softmig_sanitizers INTERFACE -fsanitize=${_san} ${_extra} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_link_options(softmig_sanitizers INTERFACE -fsanitize=${_san} ${_extra})
endif()
