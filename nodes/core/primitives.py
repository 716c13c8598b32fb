"""Literal values and arithmetic as nodes."""

from __future__ import annotations

import math
import operator
from typing import Literal

from ...executor.node import Input, InputError, Inputs, Node, Outputs

INT_LIMIT = 2**63 - 1
CATEGORY = "latentgraph/primitives"


class IntValue(Node):
    """An integer constant, to feed one value into several inputs."""

    class_type = "LG_Int"
    display_name = "Int"
    category = CATEGORY

    class In(Inputs):
        value: int = Input(0, ge=-INT_LIMIT, le=INT_LIMIT)

    class Out(Outputs):
        value: int

    def run(self, x: In) -> Out:
        return self.Out(value=x.value)


class FloatValue(Node):
    """A floating-point constant."""

    class_type = "LG_Float"
    display_name = "Float"
    category = CATEGORY

    class In(Inputs):
        value: float = Input(0.0, step=0.01)

    class Out(Outputs):
        value: float

    def run(self, x: In) -> Out:
        return self.Out(value=x.value)


class StringValue(Node):
    """A text constant (prompts, file names)."""

    class_type = "LG_String"
    display_name = "String"
    category = CATEGORY

    class In(Inputs):
        value: str = Input("", multiline=True)

    class Out(Outputs):
        value: str

    def run(self, x: In) -> Out:
        return self.Out(value=x.value)


class BooleanValue(Node):
    """A true/false constant."""

    class_type = "LG_Boolean"
    display_name = "Boolean"
    category = CATEGORY

    class In(Inputs):
        value: bool = Input(False)

    class Out(Outputs):
        value: bool

    def run(self, x: In) -> Out:
        return self.Out(value=x.value)


MathOp = Literal["add", "sub", "mul", "div", "min", "max", "pow"]
_OPS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "min": min, "max": max}


def _apply(op: str, a: float, b: float, *, integer: bool) -> float:
    if op == "div":
        if b == 0:
            raise InputError("b", "division by zero")
        return a // b if integer else a / b
    if op == "pow":
        if integer and b < 0:
            raise InputError("b", "a negative exponent does not give an integer; use LG_FloatMath")
        if integer and abs(a) > 1 and b * math.log2(abs(a)) > 63:
            raise InputError("b", f"{a} ** {b} does not fit in a 64-bit integer")
        try:
            result = a**b
        except (OverflowError, ZeroDivisionError) as err:
            raise InputError("b", f"{a} ** {b} is not a finite number ({err})") from None
        if isinstance(result, complex):
            raise InputError("b", f"{a} ** {b} is not a real number")
        return result
    return _OPS[op](a, b)


class IntMath(Node):
    """Integer arithmetic: a (op) b. Division is floor division; pow needs b >= 0."""

    class_type = "LG_IntMath"
    category = CATEGORY

    class In(Inputs):
        a: int = Input(0, ge=-INT_LIMIT, le=INT_LIMIT)
        b: int = Input(0, ge=-INT_LIMIT, le=INT_LIMIT)
        op: MathOp = Input("add", tooltip="add, sub, mul, div (floor), min, max, pow")

    class Out(Outputs):
        result: int

    def run(self, x: In) -> Out:
        result = int(_apply(x.op, x.a, x.b, integer=True))
        if abs(result) > INT_LIMIT:
            raise InputError("b", f"the result {result} does not fit in a 64-bit integer")
        return self.Out(result=result)


class FloatMath(Node):
    """Floating-point arithmetic: a (op) b."""

    class_type = "LG_FloatMath"
    category = CATEGORY

    class In(Inputs):
        a: float = Input(0.0, step=0.01)
        b: float = Input(0.0, step=0.01)
        op: MathOp = Input("add", tooltip="add, sub, mul, div, min, max, pow")

    class Out(Outputs):
        result: float

    def run(self, x: In) -> Out:
        result = float(_apply(x.op, x.a, x.b, integer=False))
        if math.isinf(result) and math.isfinite(x.a) and math.isfinite(x.b):
            raise InputError("b", f"{x.a} {x.op} {x.b} overflows a float")
        return self.Out(result=result)


NODES = [IntValue, FloatValue, StringValue, BooleanValue, IntMath, FloatMath]
