/* The packed form of an application error (CV_EAPP) inside one process and through the RPC layer. */
#ifndef CV_CORE_APPERR_H
#define CV_CORE_APPERR_H

#include <stddef.h>
#include <stdint.h>

#include "cverse/error.h"

/* A CV_EAPP answer carries its message where every error does (the error string) and the rest as the
 * answer's body, packed as: code NUL details_type NUL details-bytes. The object runtime produces it
 * (cv_reply_app_error), node and gate pass it on as a body, and net/rpc maps it to the Frame's
 * app_code / app_details_type / app_details fields on the wire (docs/protocol.md). */

/* 1 if code is a valid application code: 1..CV_APP_CODE_MAX bytes of [A-Za-z0-9_.-]. */
int cv_apperr_code_valid(const char *code);
/* Packs e's code, details_type ("" or NULL: none) and details into *out (malloc'ed, owned by the caller)
 * of *len bytes; e->message is not part of it. CV_EINVAL (invalid code, details without a type),
 * CV_ENOMEM. */
int cv_apperr_pack(const struct cv_app_error *e, uint8_t **out, size_t *len);
/* Reads a packed body: out's code, details_type and details point into buf (borrowed: valid as long as
 * buf), out->message is set to message (NULL gives ""). CV_EPROTO if buf is not a valid packing. */
int cv_apperr_parse(const uint8_t *buf, size_t len, const char *message, struct cv_app_error *out);

#endif
