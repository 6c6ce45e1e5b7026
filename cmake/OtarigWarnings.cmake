# otarig_set_warnings(target): the project's warning set; errors when OTARIG_WERROR.
function(otarig_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wimplicit-fallthrough)
  if(OTARIG_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(OTARIG_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
    # PUBLIC: whatever links a sanitized (static) library needs the runtimes,
    # an installed consumer included (otarigTargets.cmake carries it).
    target_link_options(${target} PUBLIC -fsanitize=address,undefined)
  endif()
endfunction()
