/*-------------------------------------------------------------------------
 * spi_util.h
 *	  Small SPI helpers shared by the background workers.
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_SPI_UTIL_H
#define TASKER_SPI_UTIL_H

#include "postgres.h"
#include "executor/spi.h"

extern void TaskerSpiExec(const char *sql, int nargs, Oid *argtypes,
						  Datum *values, const char *nulls, int expected_rc);
extern void TaskerSpiExecCached(SPIPlanPtr *plan, const char *sql, int nargs,
								Oid *argtypes, Datum *values, const char *nulls,
								int expected_rc);
extern bool TaskerExtensionInstalled(void);

#endif
