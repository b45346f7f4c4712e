"""The book's buy-apple graph (ch. 5) with MulLayer: forward the price, backward its derivatives.

100 won x 2 apples with 10% tax prints 220.00000000000003, then
price: 220, dApple: 2.2, dApple_num: 110, dTax: 200. 200 won x 5 gives
1100 with derivatives 5.5, 220, 1000.
"""
from fastbp.layers import MulLayer


def buy_apple(apple, apple_num, tax):
    mul_apple_layer = MulLayer()
    mul_tax_layer = MulLayer()
    apple_price = mul_apple_layer.forward(apple, apple_num)  # forward
    price = mul_tax_layer.forward(apple_price, tax)
    dprice = 1  # backward, in the reverse order of forward
    dapple_price, dtax = mul_tax_layer.backward(dprice)
    dapple, dapple_num = mul_apple_layer.backward(dapple_price)
    return price, dapple, dapple_num, dtax


if __name__ == "__main__":
    price, dapple, dapple_num, dtax = buy_apple(100, 2, 1.1)
    print(price)
    print("price:", int(price))
    print("dApple:", dapple)
    print("dApple_num:", int(dapple_num))
    print("dTax:", dtax)
    price, dapple, dapple_num, dtax = buy_apple(200, 5, 1.1)
    print(price)
    print(dapple, dapple_num, dtax)
