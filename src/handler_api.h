/*-------------------------------------------------------------------------
 * handler_api.h
 *	  What a SQL handler can ask of the executor running it.
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_HANDLER_API_H
#define TASKER_HANDLER_API_H

#include "utils/elog.h"

/* SQLSTATE TK001: the step failed for good (no retry) */
#define TASKER_ERRCODE_PERMANENT_FAILURE MAKE_SQLSTATE('T','K','0','0','1')
/* SQLSTATE TK002: retry after the requested backoff */
#define TASKER_ERRCODE_RETRY_AFTER MAKE_SQLSTATE('T','K','0','0','2')

extern void TaskerResetBackoffRequest(void);
extern int	TaskerBackoffRequest(void);

#endif
