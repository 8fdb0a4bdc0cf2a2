/* Checks the hand-written headers against corosync 1.4.10's API (tests/headers.rs
 * compiles it with -Werror -Wincompatible-pointer-types and runs it):
 *
 * - every function of coroipcc.h and coroipcs.h is assigned to a function-pointer
 *   variable of corosync's exact type (spelled out here, not taken from the headers),
 *   and its type is checked with __builtin_types_compatible_p (so a const or an
 *   integer type that differs fails to compile too);
 * - every field of struct coroipcs_init_state and struct coroipcs_init_state_v2, the
 *   callback typedefs, hdb_handle_t and cs_error_t have corosync's types;
 * - the program prints the layout the Rust library must agree with:
 *     function NAME                (each function checked here)
 *     sizeof TYPE N / alignof TYPE N
 *     offsetof TYPE.FIELD N
 *     value NAME N                 (cs_error_t values, COROIPCS_SERVICE_MAX)
 */
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <corosync/coroipcs.h>
#include <corosync/coroipcc.h>
#include <corosync/coroipc_types.h>

#define SAME_TYPE(expr, type) \
	_Static_assert(__builtin_types_compatible_p(__typeof__(expr), type), #expr " is not " #type)

/* corosync's callback types, spelled out. */
typedef int (*init_fn_t)(void *conn);
typedef int (*exit_fn_t)(void *conn);
typedef void (*handler_fn_t)(void *conn, const void *msg);
typedef void (*fatal_error_t)(const char *error_msg) __attribute__((noreturn));

SAME_TYPE(hdb_handle_t, uint64_t);
SAME_TYPE(coroipcs_init_fn_lvalue, init_fn_t);
SAME_TYPE(coroipcs_exit_fn_lvalue, exit_fn_t);
SAME_TYPE(coroipcs_handler_fn_lvalue, handler_fn_t);
_Static_assert(sizeof(cs_error_t) == sizeof(int), "cs_error_t is an int-sized enum");

/* ---- Functions: corosync 1.4.10's prototypes. ---- */

#define FUNCTION(name, type)                                    \
	SAME_TYPE(&name, type);                                 \
	static __typeof__(type) const check_##name = name;

/* coroipcc.h */
FUNCTION(coroipcc_service_connect,
	 cs_error_t (*)(const char *socket_name, unsigned int service, size_t request_size,
			size_t respnse__size, size_t dispatch_size, hdb_handle_t *handle))
FUNCTION(coroipcc_service_disconnect, cs_error_t (*)(hdb_handle_t handle))
FUNCTION(coroipcc_fd_get, cs_error_t (*)(hdb_handle_t handle, int *fd))
FUNCTION(coroipcc_dispatch_get, cs_error_t (*)(hdb_handle_t handle, void **buf, int timeout))
FUNCTION(coroipcc_dispatch_put, cs_error_t (*)(hdb_handle_t handle))
FUNCTION(coroipcc_dispatch_flow_control_get,
	 cs_error_t (*)(hdb_handle_t handle, unsigned int *flow_control_state))
FUNCTION(coroipcc_msg_send_reply_receive,
	 cs_error_t (*)(hdb_handle_t handle, const struct iovec *iov, unsigned int iov_len,
			void *res_msg, size_t res_len))
FUNCTION(coroipcc_msg_send_reply_receive_in_buf_get,
	 cs_error_t (*)(hdb_handle_t handle, const struct iovec *iov, unsigned int iov_len,
			void **res_msg))
FUNCTION(coroipcc_msg_send_reply_receive_in_buf_put, cs_error_t (*)(hdb_handle_t handle))
FUNCTION(coroipcc_zcb_alloc,
	 cs_error_t (*)(hdb_handle_t handle, void **buffer, size_t size, size_t header_size))
FUNCTION(coroipcc_zcb_free, cs_error_t (*)(hdb_handle_t handle, void *buffer))
FUNCTION(coroipcc_zcb_msg_send_reply_receive,
	 cs_error_t (*)(hdb_handle_t handle, void *msg, void *res_msg, size_t res_len))

/* coroipcs.h */
FUNCTION(coroipcs_ipc_init, void (*)(struct coroipcs_init_state *init_state))
FUNCTION(coroipcs_ipc_init_v2, void (*)(struct coroipcs_init_state_v2 *init_state_v2))
FUNCTION(coroipcs_private_data_get, void *(*)(void *conn))
FUNCTION(coroipcs_response_send, int (*)(void *conn, const void *msg, size_t mlen))
FUNCTION(coroipcs_response_iov_send,
	 int (*)(void *conn, const struct iovec *iov, unsigned int iov_len))
FUNCTION(coroipcs_dispatch_send, int (*)(void *conn, const void *msg, size_t mlen))
FUNCTION(coroipcs_dispatch_iov_send,
	 int (*)(void *conn, const struct iovec *iov, unsigned int iov_len))
FUNCTION(coroipcs_refcount_inc, void (*)(void *conn))
FUNCTION(coroipcs_refcount_dec, void (*)(void *conn))
FUNCTION(coroipcs_ipc_exit, void (*)(void))
FUNCTION(coroipcs_ipc_service_exit, int (*)(unsigned int service))
FUNCTION(coroipcs_handler_accept, int (*)(int fd, int revent, void *context))
FUNCTION(coroipcs_handler_dispatch, int (*)(int fd, int revent, void *context))

static const struct {
	const char *name;
	const void *fn; /* keeps every check_ variable used */
} functions[] = {
#define F(name) { #name, &check_##name }
	F(coroipcc_service_connect),
	F(coroipcc_service_disconnect),
	F(coroipcc_fd_get),
	F(coroipcc_dispatch_get),
	F(coroipcc_dispatch_put),
	F(coroipcc_dispatch_flow_control_get),
	F(coroipcc_msg_send_reply_receive),
	F(coroipcc_msg_send_reply_receive_in_buf_get),
	F(coroipcc_msg_send_reply_receive_in_buf_put),
	F(coroipcc_zcb_alloc),
	F(coroipcc_zcb_free),
	F(coroipcc_zcb_msg_send_reply_receive),
	F(coroipcs_ipc_init),
	F(coroipcs_ipc_init_v2),
	F(coroipcs_private_data_get),
	F(coroipcs_response_send),
	F(coroipcs_response_iov_send),
	F(coroipcs_dispatch_send),
	F(coroipcs_dispatch_iov_send),
	F(coroipcs_refcount_inc),
	F(coroipcs_refcount_dec),
	F(coroipcs_ipc_exit),
	F(coroipcs_ipc_service_exit),
	F(coroipcs_handler_accept),
	F(coroipcs_handler_dispatch),
#undef F
};

/* ---- struct coroipcs_init_state(_v2): corosync 1.4.10's fields. ---- */

/* The fields v1 and v2 share; v2's log_printf is v1's, renamed old_log_printf. */
#define COMMON_FIELDS(X, LOG)                                                               \
	X(socket_name, const char *)                                                        \
	X(sched_policy, int)                                                                \
	X(sched_param, const struct sched_param *)                                          \
	X(malloc, void *(*)(size_t size))                                                   \
	X(free, void (*)(void *ptr))                                                        \
	X(LOG, void (*)(const char *format, ...))                                           \
	X(service_available, int (*)(unsigned int service))                                 \
	X(private_data_size_get, int (*)(unsigned int service))                             \
	X(security_valid, int (*)(int uid, int gid))                                        \
	X(serialize_lock, void (*)(void))                                                   \
	X(serialize_unlock, void (*)(void))                                                 \
	X(sending_allowed, int (*)(unsigned int service, unsigned int id, const void *msg,  \
				   void *sending_allowed_private_data))                     \
	X(sending_allowed_release, void (*)(void *sending_allowed_private_data))            \
	X(poll_accept_add, void (*)(int fd))                                                \
	X(poll_dispatch_add, void (*)(int fd, void *context))                               \
	X(poll_dispatch_modify, void (*)(int fd, int events))                               \
	X(poll_dispatch_destroy, void (*)(int fd, void *context))                           \
	X(fatal_error, fatal_error_t)                                                       \
	X(init_fn_get, init_fn_t (*)(unsigned int service))                                 \
	X(exit_fn_get, exit_fn_t (*)(unsigned int service))                                 \
	X(handler_fn_get, handler_fn_t (*)(unsigned int service, unsigned int id))

#define V2_FIELDS(X)                                                                        \
	X(stats_create_connection, hdb_handle_t (*)(const char *name, pid_t pid, int fd))   \
	X(stats_destroy_connection, void (*)(hdb_handle_t handle))                          \
	X(stats_update_value, void (*)(hdb_handle_t handle, const char *name,               \
				       const void *value, size_t value_len))                \
	X(stats_increment_value, void (*)(hdb_handle_t handle, const char *name))           \
	X(log_printf, void (*)(unsigned int rec_ident, const char *function_name,           \
			       const char *file_name, int file_line, const char *format, ...)) \
	X(log_subsys_id, int)                                                               \
	X(stats_decrement_value, void (*)(hdb_handle_t handle, const char *name))

static struct coroipcs_init_state v1;
static struct coroipcs_init_state_v2 v2;

/* Each field's type, two ways: compatible, and assignable to a variable of it. */
#define V1_TYPE(field, type) SAME_TYPE(v1.field, type);
#define V2_TYPE(field, type) SAME_TYPE(v2.field, type);
COMMON_FIELDS(V1_TYPE, log_printf)
COMMON_FIELDS(V2_TYPE, old_log_printf)
V2_FIELDS(V2_TYPE)

#define V1_ASSIGN(field, type) { __typeof__(type) x = v1.field; (void)x; }
#define V2_ASSIGN(field, type) { __typeof__(type) x = v2.field; (void)x; }

#define PRINT_OFFSET(type, field) printf("offsetof " #type "." #field " %zu\n", offsetof(type, field))
#define V1_OFFSET(field, type) PRINT_OFFSET(coroipcs_init_state, field);
#define V2_OFFSET(field, type) PRINT_OFFSET(coroipcs_init_state_v2, field);
#define PRINT_LAYOUT(name, type)                                  \
	printf("sizeof %s %zu\n", name, sizeof(type));            \
	printf("alignof %s %zu\n", name, _Alignof(type))

/* offsetof wants a type name. */
typedef struct coroipcs_init_state coroipcs_init_state;
typedef struct coroipcs_init_state_v2 coroipcs_init_state_v2;

int main(void)
{
	COMMON_FIELDS(V1_ASSIGN, log_printf)
	COMMON_FIELDS(V2_ASSIGN, old_log_printf)
	V2_FIELDS(V2_ASSIGN)

	for (size_t i = 0; i < sizeof(functions) / sizeof(functions[0]); i++)
		printf("function %s\n", functions[i].fn != NULL ? functions[i].name : "(null)");

	PRINT_LAYOUT("coroipc_request_header_t", coroipc_request_header_t);
	PRINT_OFFSET(coroipc_request_header_t, size);
	PRINT_OFFSET(coroipc_request_header_t, id);
	PRINT_LAYOUT("coroipc_response_header_t", coroipc_response_header_t);
	PRINT_OFFSET(coroipc_response_header_t, size);
	PRINT_OFFSET(coroipc_response_header_t, id);
	PRINT_OFFSET(coroipc_response_header_t, error);
	PRINT_LAYOUT("cs_error_t", cs_error_t);
	PRINT_LAYOUT("hdb_handle_t", hdb_handle_t);
	PRINT_LAYOUT("coroipcs_init_state", coroipcs_init_state);
	COMMON_FIELDS(V1_OFFSET, log_printf)
	PRINT_LAYOUT("coroipcs_init_state_v2", coroipcs_init_state_v2);
	COMMON_FIELDS(V2_OFFSET, old_log_printf)
	V2_FIELDS(V2_OFFSET)

#define VALUE(name) printf("value " #name " %d\n", (int)(name))
	VALUE(COROIPCS_SERVICE_MAX);
	VALUE(CS_OK);
	VALUE(CS_ERR_LIBRARY);
	VALUE(CS_ERR_VERSION);
	VALUE(CS_ERR_INIT);
	VALUE(CS_ERR_TIMEOUT);
	VALUE(CS_ERR_TRY_AGAIN);
	VALUE(CS_ERR_INVALID_PARAM);
	VALUE(CS_ERR_NO_MEMORY);
	VALUE(CS_ERR_BAD_HANDLE);
	VALUE(CS_ERR_BUSY);
	VALUE(CS_ERR_ACCESS);
	VALUE(CS_ERR_NOT_EXIST);
	VALUE(CS_ERR_NAME_TOO_LONG);
	VALUE(CS_ERR_EXIST);
	VALUE(CS_ERR_NO_SPACE);
	VALUE(CS_ERR_INTERRUPT);
	VALUE(CS_ERR_NAME_NOT_FOUND);
	VALUE(CS_ERR_NO_RESOURCES);
	VALUE(CS_ERR_NOT_SUPPORTED);
	VALUE(CS_ERR_BAD_OPERATION);
	VALUE(CS_ERR_FAILED_OPERATION);
	VALUE(CS_ERR_MESSAGE_ERROR);
	VALUE(CS_ERR_QUEUE_FULL);
	VALUE(CS_ERR_QUEUE_NOT_AVAILABLE);
	VALUE(CS_ERR_BAD_FLAGS);
	VALUE(CS_ERR_TOO_BIG);
	VALUE(CS_ERR_NO_SECTIONS);
	VALUE(CS_ERR_CONTEXT_NOT_FOUND);
	VALUE(CS_ERR_TOO_MANY_GROUPS);
	VALUE(CS_ERR_IN_SHUTDOWN);
	VALUE(CS_ERR_SECURITY);
	return 0;
}
