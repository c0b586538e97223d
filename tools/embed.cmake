# Builds the Redis Functions library that fitsyncd embeds, as a C string constant:
#   cmake -DIN="a.lua;b.lua" -DOUT=out.c -DNAME=symbol -P embed.cmake
# The first file's "#!lua name=..." line names the library, and its body stays
# at the top level: its local helpers are shared by every later file. Every
# later file's body (its shebang line dropped) goes in a do ... end block of
# its own, so their local helpers cannot clash. Redis loads it as one library.
set(text "")
set(first TRUE)
foreach(f IN LISTS IN)
  file(READ "${f}" body)
  string(REGEX MATCH "^#![^\n]*\n" shebang "${body}")
  string(REGEX REPLACE "^#![^\n]*\n" "" body "${body}")
  get_filename_component(name "${f}" NAME)
  if(first)
    set(text "${shebang}-- ${name}\n${body}\n")
    set(first FALSE)
  else()
    string(APPEND text "do -- ${name}\n${body}\nend\n")
  endif()
endforeach()
file(WRITE "${OUT}.lua" "${text}")
file(READ "${OUT}.lua" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE "${OUT}" "/* Generated from ${IN}; do not edit. */\n#include <stddef.h>\nconst char ${NAME}[] = {${bytes} 0x00};\nconst size_t ${NAME}_len = ${len};\n")
