"""Scheduling: the term windows of each school (預檢 … 疑義處理), their reminders and calendar."""
