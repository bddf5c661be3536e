/* The chat demo's one-page client (src/gate/www/chat.html, embedded at build time), served at GET /chat. */
#ifndef CV_GATE_CHATPAGE_H
#define CV_GATE_CHATPAGE_H

#include <stddef.h>

extern const char cv_gate_chat_html[];  /* NUL-terminated */
extern const size_t cv_gate_chat_html_len;

#endif
