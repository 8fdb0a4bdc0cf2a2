/*
 * libcoroipc server API: corosync 1.4's coroipcs.h, function for function and
 * field for field, over the Rust coroipc crate. corosync's daemon (exec/main.c)
 * and its service engines build and run on it unchanged.
 *
 * How it runs: the library owns no thread. The daemon's poll loop drives it:
 * poll_accept_add hands it the listening fd (call coroipcs_handler_accept when
 * readable), poll_dispatch_add every other fd with a context (call
 * coroipcs_handler_dispatch(fd, revents, context)). Requests are handled inside
 * coroipcs_handler_dispatch, on the loop's thread, each handler between
 * serialize_lock and serialize_unlock (the original ran them on a thread per
 * connection under the same lock). coroipcs_response_send, _dispatch_send,
 * _private_data_get and the refcount calls take no library-wide lock: call them
 * from handlers, from engine callbacks, from any thread.
 *
 * Differences from the original (capi/README.md lists them):
 * - `conn` is a number from a table, not a pointer: after a connection is gone
 *   (its exit_fn returned and its last reference was dropped) every call given
 *   it fails (-1, or NULL for coroipcs_private_data_get), never a crash.
 * - A request whose header lies about its size never reaches a handler (the
 *   client gets CS_ERR_INVALID_PARAM; the connection stays up); a response or
 *   dispatch message whose header `size` is not its length is refused (-1).
 * - Service ids above COROIPCS_SERVICE_MAX are refused at connect without asking
 *   service_available (corosync's table has SERVICE_HANDLER_MAXIMUM_COUNT = 64
 *   entries; the original passed any id a client sent).
 * - sched_policy / sched_param are not used (there is no per-connection thread);
 *   poll_dispatch_modify is never called (the library needs POLLIN only).
 * - A dispatch message the client's ring has no room for is queued behind it up
 *   to the server's limit (coroipc::Limits); beyond it the send fails (-1)
 *   instead of growing without bound.
 */
#ifndef COROIPCS_H_DEFINED
#define COROIPCS_H_DEFINED

#include <stdlib.h>
#include <sched.h>
#include <sys/types.h>
#include <corosync/hdb.h>
#if defined(__has_include)
#if __has_include(<corosync/engine/objdb.h>)
/* Inside a corosync tree, as the original (engines rely on it). */
#include <corosync/engine/objdb.h>
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

struct iovec;

/* The largest service id a client may ask for. */
#define COROIPCS_SERVICE_MAX 63

typedef int (*coroipcs_init_fn_lvalue) (void *conn);
typedef int (*coroipcs_exit_fn_lvalue) (void *conn);
typedef void (*coroipcs_handler_fn_lvalue) (void *conn, const void *msg);

/*
 * The daemon's configuration and callbacks (the original's v1). Required:
 * socket_name, poll_accept_add, poll_dispatch_add, poll_dispatch_destroy,
 * init_fn_get, exit_fn_get, handler_fn_get. Others may be NULL: malloc/free
 * default to malloc(3)/free(3), log_printf to standard error, fatal_error to
 * logging and returning, security_valid to "root or our own uid",
 * service_available to "yes", private_data_size_get to 0, serialize_lock/unlock
 * and sending_allowed/_release to nothing (allowed). The structure is copied;
 * the functions must stay callable until coroipcs_ipc_exit returns.
 * An exit_fn that returns -1 ("busy") is called again, after every entry point and
 * every 10 ms, until it returns something else, as the original did; the
 * connection (its conn, its private data) stays valid until then.
 * sending_allowed_private_data is 512 zeroed bytes, as the original's.
 */
struct coroipcs_init_state {
	const char *socket_name;
	int sched_policy;
	const struct sched_param *sched_param;
	void *(*malloc) (size_t size);
	void (*free) (void *ptr);
        void (*log_printf) (
                const char *format,
                ...) __attribute__((format(printf, 1, 2)));
	int (*service_available)(unsigned int service);
	int (*private_data_size_get)(unsigned int service);
	int (*security_valid)(int uid, int gid);
	void (*serialize_lock)(void);
	void (*serialize_unlock)(void);
	int (*sending_allowed)(unsigned int service, unsigned int id,
		const void *msg, void *sending_allowed_private_data);
	void (*sending_allowed_release)(void *sending_allowed_private_data);
	void (*poll_accept_add)(int fd);
	void (*poll_dispatch_add)(int fd, void *context);
	void (*poll_dispatch_modify)(int fd, int events);
	void (*poll_dispatch_destroy)(int fd, void *context);
	void (*fatal_error)(const char *error_msg) __attribute__ ((noreturn));
	coroipcs_init_fn_lvalue (*init_fn_get)(unsigned int service);
	coroipcs_exit_fn_lvalue (*exit_fn_get)(unsigned int service);
	coroipcs_handler_fn_lvalue (*handler_fn_get)(unsigned int service, unsigned int id);
};

/*
 * v2 (corosync's daemon uses it): v1's fields with log_printf renamed
 * old_log_printf, then per-connection statistics (NULL: none) and logsys-style
 * logging, used when set (rec_ident encodes level, log_subsys_id and the "log"
 * record id as corosync's LOGSYS_ENCODE_RECID).
 */
struct coroipcs_init_state_v2 {
	const char *socket_name;
	int sched_policy;
	const struct sched_param *sched_param;
	void *(*malloc) (size_t size);
	void (*free) (void *ptr);
        void (*old_log_printf) (
                const char *format,
                ...) __attribute__((format(printf, 1, 2)));
	int (*service_available)(unsigned int service);
	int (*private_data_size_get)(unsigned int service);
	int (*security_valid)(int uid, int gid);
	void (*serialize_lock)(void);
	void (*serialize_unlock)(void);
	int (*sending_allowed)(unsigned int service, unsigned int id,
		const void *msg, void *sending_allowed_private_data);
	void (*sending_allowed_release)(void *sending_allowed_private_data);
	void (*poll_accept_add)(int fd);
	void (*poll_dispatch_add)(int fd, void *context);
	void (*poll_dispatch_modify)(int fd, int events);
	void (*poll_dispatch_destroy)(int fd, void *context);
	void (*fatal_error)(const char *error_msg) __attribute__ ((noreturn));
	coroipcs_init_fn_lvalue (*init_fn_get)(unsigned int service);
	coroipcs_exit_fn_lvalue (*exit_fn_get)(unsigned int service);
	coroipcs_handler_fn_lvalue (*handler_fn_get)(unsigned int service, unsigned int id);
	/* v2 functions */
	hdb_handle_t (*stats_create_connection) (const char* name,
		pid_t pid, int fd);
	void (*stats_destroy_connection) (hdb_handle_t handle);
	void (*stats_update_value) (hdb_handle_t handle,
		const char *name, const void *value, size_t value_len);
	void (*stats_increment_value) (hdb_handle_t handle, const char* name);
	void (*log_printf) (
		unsigned int rec_ident,
		const char *function_name,
		const char *file_name,
		int file_line,
		const char *format,
		...) __attribute__((format(printf, 5, 6)));
	int log_subsys_id;
	void (*stats_decrement_value) (hdb_handle_t handle, const char* name);
};

/*
 * Starts the server: listens under socket_name and hands its fds to the poll
 * callbacks. On failure (NULL, a required callback missing, already started,
 * the name in use, cannot listen) it calls fatal_error with the reason, as the
 * original; a fatal_error that returns leaves the library uninitialised. A state
 * that is NULL or not aligned for its type is not read (there is no fatal_error
 * to call): the failure goes to standard error.
 */
extern void coroipcs_ipc_init (
	struct coroipcs_init_state *init_state);

extern void coroipcs_ipc_init_v2 (
        struct coroipcs_init_state_v2 *init_state_v2);

/* The connection's private data (private_data_size_get bytes, zeroed), or NULL. */
extern void *coroipcs_private_data_get (void *conn);

/*
 * Answers the request being handled on `conn` (during its handler), else its
 * oldest request whose handler returned without answering. `msg` starts with a
 * coroipc_response_header_t whose size is mlen; it is copied. 0, or -1 (no such
 * connection, nothing to answer, the client gone, larger than its response
 * ring, a lying header).
 */
extern int coroipcs_response_send (
	void *conn,
	const void *msg,
	size_t mlen);

extern int coroipcs_response_iov_send (
	void *conn,
	const struct iovec *iov,
	unsigned int iov_len);

/*
 * Sends a dispatch message (starting with a coroipc_response_header_t whose size
 * is its length) to `conn`; it is copied. 0, or -1 (as response_send, or the
 * ring and its queue full).
 */
extern int coroipcs_dispatch_send (
	void *conn,
	const void *msg,
	size_t mlen);

extern int coroipcs_dispatch_iov_send (
	void *conn,
	const struct iovec *iov,
	unsigned int iov_len);

/*
 * Keep `conn` (its number and private data) valid past its disconnect until the
 * matching coroipcs_refcount_dec. Unknown `conn`: nothing happens; so too for a
 * `conn` whose disconnect, racing this call on another thread, already let it go
 * (closed with no reference left): take references from handlers, as corosync's
 * services do, to be sure of one.
 */
extern void coroipcs_refcount_inc (void *conn);

extern void coroipcs_refcount_dec (void *conn);

/*
 * Stops the server: every connection's exit_fn runs, every fd goes back through
 * poll_dispatch_destroy, the listener closes.
 */
extern void coroipcs_ipc_exit (void);

/*
 * Disconnects every client of `service` (each exit_fn runs). 0 when none is
 * left, -1 when connections of it are still held (by references, or an exit_fn
 * still busy): call again. It may call a busy exit_fn again, between
 * serialize_lock and serialize_unlock: call it without holding serialize_lock, as
 * corosync does (its unlink work is scheduled with schedwrk_create_nolock).
 */
extern int coroipcs_ipc_service_exit (unsigned int service);

/* For the daemon's loop: the listening fd is readable. Returns 0. */
extern int coroipcs_handler_accept (
	int fd,
	int revent,
	void *context);

/*
 * For the daemon's loop: an fd given to poll_dispatch_add is readable (or in
 * error); `context` says which. Returns 0 (the library removes its fds itself,
 * through poll_dispatch_destroy).
 */
extern int coroipcs_handler_dispatch (
	int fd,
	int revent,
	void *context);

#ifdef __cplusplus
}
#endif

#endif /* COROIPCS_H_DEFINED */
