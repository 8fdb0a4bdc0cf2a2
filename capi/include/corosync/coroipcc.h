/*
 * libcoroipc client API: corosync 1.4's coroipcc.h, function for function, over
 * the Rust coroipc crate. A program or library built against corosync's
 * coroipcc.h links against libcoroipc unchanged.
 *
 * Differences from the original (all on the safe side; capi/README.md lists them):
 * - A handle is a number from a table: a stale, freed or made-up handle gets
 *   CS_ERR_BAD_HANDLE, never a crash; a NULL out-pointer, or an out-pointer or
 *   iovec array not aligned for its type, gets CS_ERR_INVALID_PARAM.
 * - A request must start with a coroipc_request_header_t whose id is in 0..65535
 *   and whose size is at least the bytes given (else CS_ERR_INVALID_PARAM), and
 *   fit request_size and the largest request the server granted, before anything
 *   is copied (else CS_ERR_INVALID_PARAM, as the original). A size larger
 *   than the bytes given is padded with zeros to it (corosync's cpg_membership_get
 *   sends a bare header claiming its whole request: the original's server read
 *   whatever its buffer held there).
 * - A response shorter than res_len is copied whole and the rest of res_msg
 *   zeroed (the original copied res_len bytes of whatever the buffer held); a
 *   longer one is cut at res_len, as the original.
 * - zcb buffers are the library's own memory (no file shared with the server):
 *   zcb_free and zcb_msg_send_reply_receive accept only a pointer zcb_alloc
 *   returned for the same handle (else CS_ERR_INVALID_PARAM), and the message is
 *   copied once into the request ring when sent.
 * - Requests on one handle from several threads take turns (as the original's
 *   per-instance mutex). The dispatch side does not wait for them: beside a
 *   request on another thread, dispatch_get waits at most its own timeout or
 *   15 ms, whichever is longer (and gets a message that came meanwhile within
 *   about 10 ms), fd_get and dispatch_flow_control_get not at all; a
 *   dispatch_get waiting on its fd blocks nothing.
 *
 * Threads: any. Memory returned in *buf / *res_msg is the library's copy, valid
 * until the matching _put (for *res_msg, or this thread's next _in_buf_get); read
 * it only. Dispatch messages nest (see coroipcc_dispatch_get).
 */
#ifndef COROIPCC_H_DEFINED
#define COROIPCC_H_DEFINED

#include <pthread.h>
#include <stddef.h>
#include <sys/poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <corosync/corotypes.h>
#include <corosync/hdb.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Connects to `service` of the server listening under `socket_name` (starting
 * with '/': a socket file; otherwise a Linux abstract name, as corosync's
 * "corosync.ipc"). The three sizes are the largest request, response and the
 * dispatch ring's capacity the client asks for; the server may cap them
 * (coroipcs: 8 MiB each). Returns CS_OK; CS_ERR_TRY_AGAIN when nobody listens
 * under the name (the daemon is not running, as the original);
 * CS_ERR_NOT_EXIST (no such service); CS_ERR_ACCESS (refused by the server's
 * security callback or the service); CS_ERR_NO_RESOURCES; CS_ERR_TIMEOUT;
 * CS_ERR_SECURITY (a malformed answer); CS_ERR_INVALID_PARAM (NULL, a service
 * above 65535, a size of 0); CS_ERR_LIBRARY.
 */
extern cs_error_t
coroipcc_service_connect (
	const char *socket_name,
	unsigned int service,
	size_t request_size,
	size_t respnse__size,
	size_t dispatch_size,
	hdb_handle_t *handle);

/*
 * Disconnects and frees the handle; every pointer obtained through it is
 * dangling from now on. The connection is shut down first, so a call blocked on
 * another thread returns at once (a request: CS_ERR_LIBRARY; dispatch_get:
 * CS_ERR_BAD_HANDLE).
 */
extern cs_error_t
coroipcc_service_disconnect (
	hdb_handle_t handle);

/*
 * A descriptor to poll(2) for POLLIN: readable when a dispatch message waits or
 * the server is gone. It belongs to the handle: do not close it.
 */
extern cs_error_t
coroipcc_fd_get (
	hdb_handle_t handle,
	int *fd);

/*
 * The next dispatch message, in place: *buf points to it (it starts with a
 * coroipc_response_header_t, 8-aligned) until coroipcc_dispatch_put. Waits up to
 * `timeout` ms (0: just look; -1: as long as the server lives). Returns CS_OK
 * with *buf set; CS_ERR_TRY_AGAIN with *buf NULL when none came in time (or the
 * wait was interrupted); CS_ERR_LIBRARY once the server is gone;
 * CS_ERR_MESSAGE_ERROR for a message without a valid header (dropped). While
 * another thread holds a dispatch message of the handle, this waits for its put
 * within `timeout` too (CS_ERR_TRY_AGAIN when it passes).
 *
 * Nesting: a get by the thread that holds a dispatch message (a callback of
 * cpg_dispatch(CS_DISPATCH_ALL) calling cpg_dispatch(CS_DISPATCH_ONE)) gets the
 * next message and leaves the held one valid, as the original did until its put;
 * each coroipcc_dispatch_put releases the innermost message held, so gets and
 * puts pair like brackets. A get that finds nothing releases nothing. A thread
 * holds at most 64 at once: one more get is CS_ERR_NO_RESOURCES (nothing taken).
 */
extern cs_error_t
coroipcc_dispatch_get (
	hdb_handle_t handle,
	void **buf,
	int timeout);

/*
 * Releases the innermost dispatch message this thread holds (that of its last
 * coroipcc_dispatch_get not yet put); outer ones stay valid. None held by this
 * thread: CS_OK and nothing happens; a message another thread holds stays held
 * (only the thread that got a message can put it).
 */
extern cs_error_t
coroipcc_dispatch_put (
	hdb_handle_t handle);

/*
 * 1 while the server reports this connection's dispatch ring in flow control
 * (above its high watermark until it drains below the low one), else 0.
 */
extern cs_error_t
coroipcc_dispatch_flow_control_get (
	hdb_handle_t handle,
	unsigned int *flow_control_state);

/*
 * Sends the request gathered from `iov` and copies its response (see the top of
 * this file for the sizes) into res_msg. Returns CS_OK (the service's status is
 * in the response header's `error`); CS_ERR_TRY_AGAIN when the server's
 * admission control (sending_allowed) refused it, as the original;
 * CS_ERR_INVALID_PARAM (NULL, a lying header, a request larger than
 * request_size, a command the service does not have); CS_ERR_LIBRARY (the
 * server is gone); CS_ERR_MESSAGE_ERROR (a response without a valid header).
 */
extern cs_error_t
coroipcc_msg_send_reply_receive (
	hdb_handle_t handle,
	const struct iovec *iov,
	unsigned int iov_len,
	void *res_msg,
	size_t res_len);

/*
 * As coroipcc_msg_send_reply_receive, keeping the response: *res_msg points to
 * it (8-aligned; its header's size is its length) until this thread's
 * coroipcc_msg_send_reply_receive_in_buf_put or next _in_buf_get on the handle.
 * Each thread has its own (the original's was the shared response buffer, reused
 * by the next request of any thread). Memory: one response per thread that holds
 * one, each at most the largest response the server granted; a thread that exits
 * without its _put leaves its response held until coroipcc_service_disconnect
 * (the library cannot tell it exited), so a pool of short-lived threads that skip
 * the _put (corosync's confdb does, on an allocation failure) keeps up to one
 * response per such thread until then.
 */
extern cs_error_t
coroipcc_msg_send_reply_receive_in_buf_get (
	hdb_handle_t handle,
	const struct iovec *iov,
	unsigned int iov_len,
	void **res_msg);

/* Releases this thread's response of _in_buf_get (none held: CS_OK). */
extern cs_error_t
coroipcc_msg_send_reply_receive_in_buf_put (
	hdb_handle_t handle);

/*
 * *buffer points to `header_size` + `size` bytes, 8-aligned and zeroed, owned by
 * `handle` until coroipcc_zcb_free or the disconnect (corosync's libraries put
 * their request header in the first `header_size`). Write a whole request into
 * it (starting with a coroipc_request_header_t) and send it with
 * coroipcc_zcb_msg_send_reply_receive. CS_ERR_INVALID_PARAM (NULL, a total of 0
 * or larger than request_size or the server's grant); CS_ERR_NO_MEMORY.
 */
extern cs_error_t
coroipcc_zcb_alloc (
	hdb_handle_t handle,
	void **buffer,
	size_t size,
        size_t header_size);

/* Frees a buffer of coroipcc_zcb_alloc on the same handle. */
extern cs_error_t
coroipcc_zcb_free (
	hdb_handle_t handle,
	void *buffer);

/*
 * Sends the request in a zcb buffer (`msg`, as coroipcc_zcb_alloc returned it)
 * and copies the response into res_msg, as coroipcc_msg_send_reply_receive.
 */
extern cs_error_t
coroipcc_zcb_msg_send_reply_receive (
	hdb_handle_t handle,
	void *msg,
	void *res_msg,
	size_t res_len);

#ifdef __cplusplus
}
#endif

#endif /* COROIPCC_H_DEFINED */
