/*
 * libcoroipc: the message headers of corosync 1.4's coroipc (coroipc_types.h),
 * layout for layout. Every request starts with a coroipc_request_header_t, every
 * response and dispatch message with a coroipc_response_header_t; `size` is the
 * whole message's length in bytes, header included. Each field is 8-aligned, so
 * the request header is 16 bytes and the response header 24.
 *
 * libcoroipc checks these headers where a message enters (a request's `size` must
 * be its length and its `id` in 0..65535; a response or dispatch message must be
 * at least a header long and its `size` its length); the original trusted them.
 */
#ifndef COROIPC_TYPES_H_DEFINED
#define COROIPC_TYPES_H_DEFINED

#include <corosync/corotypes.h>

typedef struct {
	int size __attribute__((aligned(8)));
	int id __attribute__((aligned(8)));
} coroipc_request_header_t __attribute__((aligned(8)));

typedef struct {
	int size __attribute__((aligned(8)));
	int id __attribute__((aligned(8)));
	cs_error_t error __attribute__((aligned(8)));
} coroipc_response_header_t __attribute__((aligned(8)));

#endif /* COROIPC_TYPES_H_DEFINED */
