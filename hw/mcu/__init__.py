"""MCU cluster datapaths for on-device training (installed as ``trainforge.hw.mcu``)."""
