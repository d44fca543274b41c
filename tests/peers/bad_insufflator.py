"""A deliberately non-conforming insufflator for `endotower device-check`,
written the way a device maker might from the register table alone
(pymodbus): it answers in 5 ms, never advances SAMPLE_SEQ, accepts writes to
any word of the table, never enters a heartbeat fail-safe and does not echo
the safety word. Run: python bad_insufflator.py PORT (prints READY)."""

import asyncio
import sys

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import StartAsyncTcpServer

PRESSURE, PRESSURE_2, SAMPLE_SEQ = 0, 7, 3


class SlowContext(ModbusSlaveContext):
    """Every request takes 5 ms: longer than the island's 1.5 ms budget."""

    async def async_getValues(self, fc_as_hex, address, count=1):
        await asyncio.sleep(0.005)
        return self.getValues(fc_as_hex, address, count)

    async def async_setValues(self, fc_as_hex, address, values):
        await asyncio.sleep(0.005)
        return self.setValues(fc_as_hex, address, values)


async def main(port: int) -> None:
    words = [0] * 32
    words[PRESSURE] = 1200  # 12.00 mmHg
    words[PRESSURE_2] = 1200
    words[SAMPLE_SEQ] = 7  # never changes
    # pymodbus addresses holding registers from 1 in its data block.
    block = ModbusSequentialDataBlock(1, words)
    context = ModbusServerContext(slaves={1: SlowContext(hr=block)}, single=False)
    print("READY", flush=True)
    await StartAsyncTcpServer(context=context, address=("127.0.0.1", port))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
