/*-------------------------------------------------------------------------
 * security.c
 *	  Who is calling the API, and the checks an executor makes before it
 *	  runs a SQL handler.
 *
 * The API functions are SECURITY DEFINER: inside them current_user is the
 * extension's owner, so they authorize tasker._caller() instead.  That is
 * the role after SET ROLE (GetOuterUserId), which security-definer frames
 * do not change; inside an executor it is the role the SQL handler being
 * run acts as, because the executor's own session is the bootstrap
 * superuser's and a handler that calls the API must get no more than its
 * registering role would.
 *
 * Before each run, TaskerCheckHandler makes sure that the handler still
 * is what was registered: the function exists with the handler signature,
 * its owner is the one it had at registration (an owner change could turn
 * a SECURITY DEFINER handler into one with other rights), and the
 * registering role may still execute it.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "security.h"

/* the role a SQL handler runs as while an executor runs it, else invalid */
static Oid	handler_role = InvalidOid;

PG_FUNCTION_INFO_V1(tasker_caller);
PG_FUNCTION_INFO_V1(tasker_role_is_superuser);

/*
 * TaskerEnterHandler records that a SQL handler starts running as run_as.
 */
void
TaskerEnterHandler(Oid run_as)
{
	handler_role = run_as;
}

/*
 * TaskerLeaveHandler records that the handler has returned or failed.
 */
void
TaskerLeaveHandler(void)
{
	handler_role = InvalidOid;
}

/*
 * RoleName names a role for a message, or gives its oid when it is gone.
 */
static const char *
RoleName(Oid role)
{
	char	   *name = GetUserNameFromId(role, true);

	return name != NULL ? name : psprintf("%u", role);
}

/*
 * TaskerCheckHandler raises an error, inside the step's transaction, when
 * the handler may not run: its function is gone or no longer a handler,
 * its owner changed since registration, or run_as (the registering role)
 * is gone or may no longer execute it.
 */
void
TaskerCheckHandler(Oid handler, Oid run_as, Oid registered_owner)
{
	HeapTuple	tuple;
	Form_pg_proc proc;
	Oid			owner;
	bool		is_handler;

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(run_as)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role %u that registered the template no longer exists", run_as),
				 errhint("Register the template again as an existing role.")));

	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(handler));
	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("handler function %u no longer exists", handler),
				 errhint("Register a new version of the template with an existing handler.")));
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	owner = proc->proowner;
	is_handler = proc->prokind == PROKIND_FUNCTION && !proc->proretset &&
		proc->prorettype == JSONBOID && proc->pronargs == 1 &&
		proc->proargtypes.values[0] == JSONBOID;
	ReleaseSysCache(tuple);

	if (!is_handler)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("handler function %s no longer takes (jsonb) and returns jsonb",
						format_procedure(handler))));
	if (OidIsValid(registered_owner) && owner != registered_owner)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("owner of handler function %s changed from \"%s\" to \"%s\" since the template was registered",
						format_procedure(handler), RoleName(registered_owner), RoleName(owner)),
				 errdetail("A handler runs only with the owner it had when its template was registered."),
				 errhint("Register a new version of the template to accept the new owner.")));
	if (pg_proc_aclcheck(handler, run_as, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may no longer execute handler function %s",
						RoleName(run_as), format_procedure(handler)),
				 errdetail("Handlers run as the role that registered the template.")));
}

/*
 * tasker_caller is tasker._caller(): the role that called the API — the
 * role after SET ROLE, ignoring security-definer frames — or, while an
 * executor runs a SQL handler, the role the handler runs as.
 */
Datum
tasker_caller(PG_FUNCTION_ARGS)
{
	PG_RETURN_OID(OidIsValid(handler_role) ? handler_role : GetOuterUserId());
}

/*
 * tasker_role_is_superuser is tasker._role_is_superuser(role): whether the
 * role is a superuser (false for a role that does not exist).
 */
Datum
tasker_role_is_superuser(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(superuser_arg(PG_GETARG_OID(0)));
}
