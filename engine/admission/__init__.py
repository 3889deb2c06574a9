"""Admission: whether and when a decided run starts — priorities, guards, dispatch, the scheduler's queue."""
