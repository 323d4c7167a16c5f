/*-------------------------------------------------------------------------
 * spi_util.c
 *	  Small SPI helpers shared by the background workers.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "storage/lmgr.h"
#include "executor/spi.h"

#include "spi_util.h"

/*
 * TaskerSpiExec runs one parameterized statement and checks its result
 * code; the caller is connected to SPI inside a transaction.
 */
void
TaskerSpiExec(const char *sql, int nargs, Oid *argtypes, Datum *values,
			  const char *nulls, int expected_rc)
{
	int			rc = SPI_execute_with_args(sql, nargs, argtypes, values, nulls,
										   false, 0);

	if (rc != expected_rc)
		elog(ERROR, "tasker: \"%s\" returned %s, expected %s", sql,
			 SPI_result_code_string(rc), SPI_result_code_string(expected_rc));
}

/*
 * TaskerSpiExecCached is TaskerSpiExec for a hot statement: it is prepared
 * once per process and kept (the plan cache replans it after DDL).
 */
void
TaskerSpiExecCached(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
					Datum *values, const char *nulls, int expected_rc)
{
	int			rc;

	if (*plan == NULL)
	{
		SPIPlanPtr	prepared = SPI_prepare(sql, nargs, argtypes);

		if (prepared == NULL)
			elog(ERROR, "tasker: could not prepare \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(prepared) != 0)
			elog(ERROR, "tasker: could not keep the plan of \"%s\"", sql);
		*plan = prepared;
	}
	rc = SPI_execute_plan(*plan, values, nulls, false, 0);
	if (rc != expected_rc)
		elog(ERROR, "tasker: \"%s\" returned %s, expected %s", sql,
			 SPI_result_code_string(rc), SPI_result_code_string(expected_rc));
}

/*
 * TaskerExtensionInstalled reports whether tasker is installed in the
 * current database (inside a transaction), and if so locks the extension
 * for the rest of the transaction: DROP EXTENSION then waits for the
 * worker's transaction instead of pulling the schema out from under it.
 */
bool
TaskerExtensionInstalled(void)
{
	Oid			extension = get_extension_oid("tasker", true);

	if (!OidIsValid(extension))
		return false;
	LockDatabaseObject(ExtensionRelationId, extension, 0, AccessShareLock);
	/* the lock accepted invalidations: look again, it may have just gone */
	return get_extension_oid("tasker", true) == extension;
}
