"""Whether sensors, the schedule and declarative automation start switched on.

``MODELREC_AUTOMATION=on`` (the default) starts them RUNNING as soon as a daemon (``make ui``
runs one) loads the code location; ``off`` leaves them STOPPED until toggled in the UI.
"""

from dagster import DefaultScheduleStatus, DefaultSensorStatus

from resources.settings import automation_enabled


def sensor_status() -> DefaultSensorStatus:
    return DefaultSensorStatus.RUNNING if automation_enabled() else DefaultSensorStatus.STOPPED


def schedule_status() -> DefaultScheduleStatus:
    return DefaultScheduleStatus.RUNNING if automation_enabled() else DefaultScheduleStatus.STOPPED
