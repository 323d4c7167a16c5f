/*-------------------------------------------------------------------------
 * spi_util.c
 *	  Small SPI helpers shared by the background workers.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/extension.h"
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
 * TaskerExtensionInstalled reports whether tasker is installed in the
 * current database (inside a transaction).
 */
bool
TaskerExtensionInstalled(void)
{
	return OidIsValid(get_extension_oid("tasker", true));
}
